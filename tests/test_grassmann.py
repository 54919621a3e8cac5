"""Grassmann(n, p): quotient geometry, projector mixer, parametrization."""

import geoopt
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mhckit.functional import cayley
from mhckit.manifolds import Grassmann

F64 = torch.float64


def _shape(data, max_n=7):
    n = data.draw(st.integers(1, max_n), label="n")
    return n, data.draw(st.integers(1, n), label="p")


@given(data=st.data(), scale=st.sampled_from([1e-4, 1.0, 1e2, 1e4]),
       dtype=st.sampled_from([torch.float32, F64]), seed=st.integers(0, 2**16))
def test_parametrize_gives_an_orthonormal_frame_and_an_orthogonal_projector(data, scale, dtype,
                                                                            seed):
    n, p = _shape(data)
    man = Grassmann(n, p)
    z = scale * torch.randn(3, *man.param_shape, dtype=dtype,
                            generator=torch.Generator().manual_seed(seed))
    u = man.parametrize(z)
    tol = 1e-12 if dtype == F64 else 1e-5
    assert man.constraint_error(u).max() <= tol
    h = man.as_matrix(u)
    assert h.shape == (3, n, n)
    assert (h @ h - h).abs().max() <= 4 * tol and (h - h.mT).abs().max() <= tol
    torch.testing.assert_close(torch.diagonal(h, dim1=-2, dim2=-1).sum(-1).double(),
                               torch.full((3,), float(p), dtype=F64), atol=n * tol, rtol=0)


def test_parametrize_is_the_closed_form_of_cayley_of_the_off_diagonal_block():
    n, p = 6, 2
    man = Grassmann(n, p)
    z = torch.randn(4, p * (n - p), dtype=F64)
    block = z.reshape(4, n - p, p)
    a = torch.zeros(4, n, n, dtype=F64)
    a[:, p:, :p], a[:, :p, p:] = block, -block.mT
    torch.testing.assert_close(man.parametrize(z), cayley(a)[..., :p], atol=1e-12, rtol=0)
    top = torch.cat([torch.eye(p, dtype=F64).expand(4, p, p), block], dim=-2)
    closed = 2 * top @ torch.linalg.inv(torch.eye(p, dtype=F64) + block.mT @ block)
    torch.testing.assert_close(man.parametrize(z), closed - torch.eye(n, p, dtype=F64))


def test_param_count_is_the_dimension_of_the_grassmannian():
    for n, p in [(5, 2), (4, 1), (6, 3)]:
        man = Grassmann(n, p)
        assert man.param_shape == (p * (n - p),)
        jac = torch.autograd.functional.jacobian(
            lambda z, man=man: man.as_matrix(man.parametrize(z)), man.identity_param(dtype=F64))
        assert torch.linalg.matrix_rank(jac.reshape(n * n, -1)) == p * (n - p)


def test_identity_param_gives_the_coordinate_projector_with_nonvanishing_gradient():
    man = Grassmann(5, 2)
    z = man.identity_param(dtype=F64).requires_grad_()
    h = man.as_matrix(man.parametrize(z))
    torch.testing.assert_close(h, torch.diag(torch.tensor([1.0, 1, 0, 0, 0], dtype=F64)))
    (grad,) = torch.autograd.grad((torch.randn(5, 5, dtype=F64) * h).sum(), z)
    assert grad.norm() > 1e-2


@pytest.mark.parametrize("n,p,batch", [(5, 2, 3), (4, 2, 2), (3, 1, 1)])
def test_parametrize_passes_gradcheck_and_gradgradcheck_in_float64(n, p, batch):
    man = Grassmann(n, p)
    z = torch.randn(batch, *man.param_shape, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: man.as_matrix(man.parametrize(z)), (z,))
    assert torch.autograd.gradgradcheck(lambda z: man.as_matrix(man.parametrize(z)), (z,))


def test_the_mixer_depends_on_the_subspace_only():
    man = Grassmann(6, 3)
    u = man.random(6, 3, dtype=F64)
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, dtype=F64))
    torch.testing.assert_close(man.as_matrix(u @ rotation), man.as_matrix(u))


@given(data=st.data(), seed=st.integers(0, 2**16))
def test_gradient_is_horizontal_and_metric_consistent(data, seed):
    n, p = _shape(data)
    man = Grassmann(n, p)
    gen = torch.Generator().manual_seed(seed)
    u = man.random(2, n, p, dtype=F64, generator=gen)
    g = torch.randn(2, n, p, dtype=F64, generator=gen)
    v = man.proju(u, torch.randn(2, n, p, dtype=F64, generator=gen))
    rgrad = man.egrad2rgrad(u, g)
    assert (u.mT @ rgrad).abs().max() < 1e-12
    torch.testing.assert_close(man.proju(u, rgrad), rgrad, atol=1e-12, rtol=0)
    torch.testing.assert_close(man.inner(u, rgrad, v), (g * v).sum(dim=(-2, -1)),
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize("retraction", ["cayley", "qr"])
def test_retraction_of_a_horizontal_vector_is_first_order_and_exact(retraction):
    man = Grassmann(7, 3, retraction=retraction)
    u = man.random(4, 7, 3, dtype=F64)
    d = man.proju(u, torch.randn(4, 7, 3, dtype=F64))
    gaps = [float((man.retr(u, t * d) - u - t * d).norm()) for t in (1e-2, 1e-3)]
    assert gaps[1] < gaps[0] / 50
    assert man.constraint_error(man.retr(u, 1e3 * d)).max() < 1e-12


def test_riemannian_adam_finds_a_target_subspace():
    man = Grassmann(6, 2)
    target = man.as_matrix(man.random(6, 2, dtype=F64))
    u = geoopt.ManifoldParameter(man.random(6, 2, dtype=F64), manifold=man)
    opt = geoopt.optim.RiemannianAdam([u], lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        (man.as_matrix(u) - target).square().sum().backward()
        opt.step()
    assert float((man.as_matrix(u.detach()) - target).square().sum()) < 1e-3
    assert man.constraint_error(u.detach()) < 1e-12


def test_full_dimensional_subspace_is_the_single_identity_mixer():
    man = Grassmann(4, 4)
    assert man.param_shape == (0,) and man.num_parameters(8) == 0
    h = man.as_matrix(man.parametrize(torch.zeros(3, 0, dtype=F64)))
    torch.testing.assert_close(h, torch.eye(4, dtype=F64).expand(3, 4, 4))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="p must be <= n"):
        Grassmann(2, 3)
    with pytest.raises(TypeError, match="p must be an int"):
        Grassmann(4, "2")
    with pytest.raises(TypeError):
        Grassmann(4, 2, metric="canonical")
