"""Inverses of many small matrices by unrolled Gauss–Jordan: LAPACK's answer, any pivots."""

import itertools

import pytest
import torch

from mhckit.functional import small_inverse
from mhckit.functional.small_inverse import UNROLLED_MAX_SIZE

F64 = torch.float64


def _well_conditioned(batch, k, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(*batch, k, k, dtype=F64, generator=gen)
    return (g + 2 * k ** 0.5 * torch.eye(k, dtype=F64)).to(dtype)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 7, 8, UNROLLED_MAX_SIZE, UNROLLED_MAX_SIZE + 1])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_small_inverse_is_lapacks_inverse(k, dtype):
    m = _well_conditioned((3, 5), k, dtype, k)
    tol = 1e-12 if dtype == F64 else 1e-5
    torch.testing.assert_close(small_inverse(m), torch.linalg.inv(m), atol=tol, rtol=tol)


def test_small_inverse_pivots_past_zero_leading_entries():
    # elimination without row pivoting divides by zero on every one of these
    perms = torch.stack([torch.eye(4, dtype=F64)[list(p)]
                         for p in itertools.permutations(range(4))])
    torch.testing.assert_close(small_inverse(perms), perms.mT, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_inverse_of_identity_minus_huge_skew_matches_lapack(dtype):
    # I − A, A skew with entries near 1e4: unpivoted elimination returns NaN here in float32
    gen = torch.Generator().manual_seed(0)
    g = 1e4 * torch.randn(256, 8, 8, dtype=F64, generator=gen)
    m = torch.eye(8, dtype=F64) - (g - g.mT)
    reference = torch.linalg.inv(m)
    got = small_inverse(m.to(dtype)).double()
    # ‖(I − A)⁻¹‖₂ ≤ 1 and cond(I − A) ≤ 1 + ‖A‖₂: a backward-stable inverse is this close
    tol = 1e-10 if dtype == F64 else 1e-2
    assert (got - reference).abs().max() <= tol


@pytest.mark.parametrize("k", [1, 3, 5, UNROLLED_MAX_SIZE + 1])
def test_small_inverse_gradient_is_the_derivative_of_the_inverse(k):
    m = _well_conditioned((2,), k, F64, 1).requires_grad_()
    assert torch.autograd.gradcheck(small_inverse, (m,))
    if k < UNROLLED_MAX_SIZE:  # the backward is the same function of the saved inverse
        assert torch.autograd.gradgradcheck(small_inverse, (m,))


def test_small_inverse_upcasts_half_precision_and_returns_its_dtype():
    m = _well_conditioned((4,), 3, torch.bfloat16, 2)
    out = small_inverse(m)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), torch.linalg.inv(m.float()), atol=2e-2, rtol=2e-2)


def test_small_inverse_compiles_to_one_graph_with_its_backward():
    torch._dynamo.reset()
    m = _well_conditioned((6,), 5, torch.float32, 3)
    weights = torch.randn(6, 5, 5)

    def loss(m):
        return (small_inverse(m) * weights).sum()

    # fullgraph=True: a graph break anywhere in forward or backward tracing raises
    eager_m, traced_m = m.clone().requires_grad_(), m.clone().requires_grad_()
    loss(eager_m).backward()
    torch.compile(loss, backend="eager", fullgraph=True)(traced_m).backward()
    torch._dynamo.reset()
    torch.testing.assert_close(traced_m.grad, eager_m.grad, atol=1e-5, rtol=1e-5)


def test_small_inverse_rejects_bad_input_naming_the_argument():
    with pytest.raises(TypeError, match="m must be a torch.Tensor"):
        small_inverse([[1.0]])
    with pytest.raises(ValueError, match=r"m must have shape \(\.\.\., k, k\)"):
        small_inverse(torch.ones(2, 3))
