"""The Cayley map: LAPACK's ``(I − A)⁻¹(I + A)``, a rotation, orthogonal for any skew input."""

import math

import pytest
import torch

from mhckit.functional import cayley

F64 = torch.float64


def _skew(m, scale, seed, batch=64, dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    g = scale * torch.randn(batch, m, m, dtype=F64, generator=gen)
    return (g - g.mT).to(dtype)


def _orthogonality_error(q):
    q = q.double()
    return (q.mT @ q - torch.eye(q.shape[-1], dtype=F64)).abs().max().item()


@pytest.mark.parametrize("m", [1, 2, 3, 4, 6, 8, 20])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e2])
def test_cayley_is_lapacks_solve_of_identity_minus_a(m, scale):
    a = _skew(m, scale, m)
    eye = torch.eye(m, dtype=F64)
    reference = torch.linalg.solve(eye - a, eye + a)
    torch.testing.assert_close(cayley(a), reference, atol=1e-12, rtol=0)


def test_cayley_of_a_3x3_skew_matrix_rotates_by_twice_the_arctangent_of_its_gibbs_vector():
    # A = [v]x: Cayley(A) is the rotation about v by 2·atan|v| (Gibbs/Rodrigues vector)
    a = _skew(3, 2.0, 0)
    v = torch.stack([a[:, 2, 1], a[:, 0, 2], a[:, 1, 0]], dim=-1)
    q = cayley(a)
    torch.testing.assert_close((q @ v.unsqueeze(-1)).squeeze(-1), v, atol=1e-12, rtol=0)
    angle = 2 * torch.atan(v.norm(dim=-1))
    torch.testing.assert_close(q.diagonal(dim1=-2, dim2=-1).sum(-1), 1 + 2 * torch.cos(angle),
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(q), torch.ones(64, dtype=F64), atol=1e-12,
                               rtol=0)


@pytest.mark.parametrize("m", [2, 3])
def test_small_cayley_is_orthogonal_in_float32_without_refinement_for_extreme_entries(m):
    # a float32 LU solve leaves ~1e-3 here; the closed form has no cancellation
    for scale in (1e4, 1e8, 1e30):
        q = cayley(_skew(m, scale, 1, dtype=torch.float32))
        assert q.dtype == torch.float32 and torch.isfinite(q).all()
        assert _orthogonality_error(q) <= 1e-6


@pytest.mark.parametrize("m", [4, 8, 12])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_cayley_is_as_orthogonal_as_the_conditioning_allows_for_extreme_entries(m, dtype):
    # ‖QᵀQ − I‖ ≲ eps · cond(I − A), cond ≤ 1 + ‖A‖₂ ≈ 1e4·√m here (callers polar-refine)
    q = cayley(_skew(m, 1e4, 2, dtype=dtype))
    eps = torch.finfo(dtype).eps
    assert _orthogonality_error(q) <= 100 * eps * 1e4 * math.sqrt(m)


@pytest.mark.parametrize("m", [4, 8, 12])
def test_refined_cayley_is_orthogonal_in_float32_for_extreme_entries(m):
    q = cayley(_skew(m, 1e4, 2, dtype=torch.float32), refine=True)
    assert _orthogonality_error(q) <= 1e-6


@pytest.mark.parametrize("m", [2, 3, 5])
@pytest.mark.parametrize("refine", [False, True])
def test_cayley_gradient_is_exact(m, refine):
    # along skew directions: the refinement's derivative is the identity there only
    g = _skew(m, 1.0, 3, batch=2).triu().requires_grad_()

    def f(g):
        return cayley(g - g.mT, refine=refine)

    assert torch.autograd.gradcheck(f, (g,))
    assert torch.autograd.gradgradcheck(f, (g,))


@pytest.mark.parametrize("m", [3, 5])
def test_cayley_gradient_around_a_constant_base_is_exact(m):
    # the base is folded into the custom function: its backward reads Q = Bᵀ(BQ)
    base = cayley(_skew(m, 1.0, 8, batch=1)[0])
    g = _skew(m, 1.0, 9, batch=2).triu().requires_grad_()

    def f(g):
        return cayley(g - g.mT, base, refine=True)

    assert torch.autograd.gradcheck(f, (g,))
    assert torch.autograd.gradgradcheck(f, (g,))


def test_cayley_around_a_learned_base_differentiates_the_base_too():
    a = _skew(4, 1.0, 10, batch=2).requires_grad_()
    base = cayley(_skew(4, 1.0, 11, batch=2)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: cayley(a, b), (a, base))


def test_cayley_gradient_is_the_gradient_through_lapacks_solve():
    a = _skew(6, 3.0, 7, batch=5).requires_grad_()
    weights = torch.randn(5, 6, 6, dtype=F64)
    eye = torch.eye(6, dtype=F64)
    (ours,) = torch.autograd.grad((cayley(a, refine=True) * weights).sum(), a)
    (lapack,) = torch.autograd.grad((torch.linalg.solve(eye - a, eye + a) * weights).sum(), a)
    torch.testing.assert_close(ours, lapack, atol=1e-12, rtol=0)


def test_cayley_around_a_base_is_the_base_times_cayley():
    a, b = _skew(4, 1.0, 4, batch=3), cayley(_skew(4, 1.0, 5, batch=3))
    torch.testing.assert_close(cayley(a, base=b), b @ cayley(a), atol=1e-14, rtol=0)


def test_cayley_returns_half_precision_inputs_in_their_dtype():
    a = _skew(4, 1.0, 6, batch=3)
    q = cayley(a.to(torch.bfloat16))
    assert q.dtype == torch.bfloat16
    torch.testing.assert_close(q.double(), cayley(a), atol=3e-2, rtol=0)
