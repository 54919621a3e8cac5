"""Stiefel(n, p): parametrization, metrics, retractions, arguments."""

import geoopt
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mhckit.functional import cayley
from mhckit.manifolds import Stiefel

F64 = torch.float64
SCALES = st.sampled_from([1e-4, 1.0, 1e2, 1e4])


def _shape(data, max_n=7):
    n = data.draw(st.integers(1, max_n), label="n")
    return n, data.draw(st.integers(1, n), label="p")


def _dense_skew(man, z):
    """The full n x n skew matrix [[S, -Bᵀ], [B, 0]] that parametrize never forms."""
    omega, b = man._generator(z)
    n, p = man.shape
    a = torch.zeros(*z.shape[:-1], n, n, dtype=z.dtype)
    a[..., :p, :p] = omega
    if b is not None:
        a[..., :, :p] += b
        a[..., :p, :] -= b.mT
    return a


@given(data=st.data(), scale=SCALES, dtype=st.sampled_from([torch.float32, F64]),
       seed=st.integers(0, 2**16))
def test_parametrize_lands_on_stiefel_for_any_input(data, scale, dtype, seed):
    n, p = _shape(data)
    man = Stiefel(n, p)
    gen = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(4, *man.param_shape, dtype=dtype, generator=gen)
    x = man.parametrize(z)
    assert x.shape == (4, n, p) and x.dtype == dtype
    assert man.constraint_error(x).max() <= (1e-12 if dtype == F64 else 1e-5)


@given(data=st.data(), seed=st.integers(0, 2**16))
def test_parametrize_is_first_columns_of_cayley_of_the_skew_matrix(data, seed):
    n, p = _shape(data)
    man = Stiefel(n, p)
    z = torch.randn(3, *man.param_shape, dtype=F64, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(man.parametrize(z), cayley(_dense_skew(man, z))[..., :p],
                               atol=1e-12, rtol=0)


def test_param_count_is_the_dimension_and_parametrize_is_a_local_chart_at_identity():
    for n, p in [(5, 3), (4, 4), (6, 1)]:
        man = Stiefel(n, p)
        assert man.param_shape == (n * p - p * (p + 1) // 2,)
        jac = torch.autograd.functional.jacobian(man.parametrize, man.identity_param(dtype=F64))
        assert torch.linalg.matrix_rank(jac.reshape(n * p, -1)) == man.param_shape[0]


def test_identity_param_maps_to_canonical_frame_with_nonvanishing_gradient():
    man = Stiefel(5, 3)
    z = man.identity_param(dtype=F64).requires_grad_()
    x = man.parametrize(z)
    torch.testing.assert_close(x, torch.eye(5, 3, dtype=F64), atol=1e-15, rtol=0)
    (grad,) = torch.autograd.grad((torch.randn(5, 3, dtype=F64) * x).sum(), z)
    assert grad.norm() > 1e-2
    torch.testing.assert_close(Stiefel(4, 4).origin(4, 4, dtype=F64), torch.eye(4, dtype=F64))


@pytest.mark.parametrize("n,p", [(5, 3), (4, 4), (3, 1)])
@pytest.mark.parametrize("parametrization", ["cayley", "iterative-cayley"])
def test_parametrize_passes_gradcheck_in_float64(n, p, parametrization):
    man = Stiefel(n, p, parametrization=parametrization, iterations=40)
    z = (0.1 * torch.randn(2, *man.param_shape, dtype=F64)).requires_grad_()
    assert torch.autograd.gradcheck(man.parametrize, (z,))


@pytest.mark.parametrize("n,p,batch", [(5, 3, 3), (5, 3, 2), (4, 2, 2), (3, 1, 1), (6, 4, 4)])
def test_thin_parametrize_custom_backward_passes_gradcheck_and_gradgradcheck(n, p, batch):
    # batch = p once made torch.linalg.solve read the identity as a batch of vectors
    man = Stiefel(n, p)
    z = torch.randn(batch, *man.param_shape, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(man.parametrize, (z,))
    assert torch.autograd.gradgradcheck(man.parametrize, (z,))


def test_iterative_parametrize_implicit_matches_unrolled_once_converged():
    z = 0.1 * torch.randn(3, Stiefel(6, 2).param_shape[0], dtype=F64)
    grads = []
    for backward in ("implicit", "unrolled"):
        man = Stiefel(6, 2, parametrization="iterative-cayley", iterations=40, backward=backward)
        leaf = z.clone().requires_grad_()
        grads.append(torch.autograd.grad(man.parametrize(leaf).square().sum(), leaf)[0])
    torch.testing.assert_close(grads[0], grads[1], atol=1e-12, rtol=0)


@given(data=st.data(), metric=st.sampled_from(["euclidean", "canonical"]),
       seed=st.integers(0, 2**16))
def test_egrad2rgrad_is_the_riesz_representative_of_the_euclidean_gradient(data, metric, seed):
    n, p = _shape(data)
    man = Stiefel(n, p, metric=metric)
    gen = torch.Generator().manual_seed(seed)
    x = man.random(3, n, p, dtype=F64, generator=gen)
    g = torch.randn(3, n, p, dtype=F64, generator=gen)
    v = man.proju(x, torch.randn(3, n, p, dtype=F64, generator=gen))
    rgrad = man.egrad2rgrad(x, g)
    torch.testing.assert_close(man.proju(x, rgrad), rgrad, atol=1e-12, rtol=0)
    torch.testing.assert_close(man.inner(x, rgrad, v), (g * v).sum(dim=(-2, -1)),
                               atol=1e-12, rtol=0)


@given(data=st.data(), seed=st.integers(0, 2**16))
def test_proju_is_an_idempotent_projection_onto_the_tangent_space(data, seed):
    n, p = _shape(data)
    man = Stiefel(n, p)
    gen = torch.Generator().manual_seed(seed)
    x = man.random(2, n, p, dtype=F64, generator=gen)
    u = man.proju(x, torch.randn(2, n, p, dtype=F64, generator=gen))
    torch.testing.assert_close(man.proju(x, u), u, atol=1e-12, rtol=0)
    assert (x.mT @ u + u.mT @ x).abs().max() < 1e-12


def test_canonical_metric_is_euclidean_minus_half_the_vertical_part():
    man, euclid = Stiefel(6, 3, metric="canonical"), Stiefel(6, 3)
    x = man.random(6, 3, dtype=F64)
    u = man.proju(x, torch.randn(6, 3, dtype=F64))
    xtu = x.mT @ u
    torch.testing.assert_close(man.inner(x, u), euclid.inner(x, u) - 0.5 * xtu.square().sum())


@pytest.mark.parametrize("retraction", ["cayley", "qr", "iterative-cayley"])
@pytest.mark.parametrize("n,p", [(6, 2), (4, 4)])
def test_retraction_is_first_order(retraction, n, p):
    man = Stiefel(n, p, retraction=retraction)
    x = man.random(3, n, p, dtype=F64)
    u = man.proju(x, torch.randn(3, n, p, dtype=F64))
    gaps = [float((man.retr(x, t * u) - x - t * u).norm()) for t in (1e-2, 1e-3)]
    assert gaps[1] < gaps[0] / 50  # O(t²): a tenfold smaller step, a hundredfold smaller gap


@pytest.mark.parametrize("retraction", ["cayley", "qr"])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_exact_retractions_stay_on_the_manifold_for_huge_steps(retraction, dtype):
    man = Stiefel(7, 3, retraction=retraction)
    x = man.random(20, 7, 3, dtype=dtype)
    for scale in (1.0, 1e2, 1e4):
        u = man.proju(x, scale * torch.randn(20, 7, 3, dtype=dtype))
        assert man.constraint_error(man.retr(x, u)).max() <= (1e-12 if dtype == F64 else 1e-5)


def test_cayley_retraction_is_the_wen_yin_cayley_curve():
    man = Stiefel(6, 2)
    x = man.random(6, 2, dtype=F64)
    u = man.proju(x, torch.randn(6, 2, dtype=F64))
    pu = u - 0.5 * x @ (x.mT @ u)
    w = pu @ x.mT - x @ pu.mT
    torch.testing.assert_close(man.retr(x, u), cayley(0.5 * w) @ x, atol=1e-13, rtol=0)


def test_iterative_cayley_retraction_error_is_small_for_small_steps_only():
    exact, iterative = Stiefel(8, 3), Stiefel(8, 3, retraction="iterative-cayley")
    x = exact.random(50, 8, 3, dtype=F64)
    u = exact.proju(x, torch.randn(50, 8, 3, dtype=F64))
    u = u / u.norm(dim=(-2, -1), keepdim=True)
    small = iterative.constraint_error(iterative.retr(x, 0.01 * u)).max()
    large = iterative.constraint_error(iterative.retr(x, 0.5 * u)).max()
    assert small < 1e-7 < large


def test_as_matrix_is_the_frame_when_square_and_its_projector_when_thin():
    square, thin = Stiefel(4, 4), Stiefel(5, 2)
    q = square.random(4, 4, dtype=F64)
    assert square.as_matrix(q) is q
    x = thin.random(5, 2, dtype=F64)
    h = thin.as_matrix(x)
    torch.testing.assert_close(h @ h, h)
    torch.testing.assert_close(h, h.mT)


def test_batched_per_token_and_low_precision_inputs():
    man = Stiefel(5, 3)
    z = torch.randn(2, 7, *man.param_shape)
    x = man.parametrize(z)
    assert x.shape == (2, 7, 5, 3)
    torch.testing.assert_close(x[1, 3], man.parametrize(z[1, 3]))
    xb = man.parametrize(z.bfloat16())
    assert xb.dtype == torch.bfloat16
    torch.testing.assert_close(xb.float(), man.parametrize(z.bfloat16().float()).bfloat16().float())


def test_geoopt_riemannian_adam_keeps_the_frame_orthonormal_and_lowers_the_loss():
    man = Stiefel(6, 2, metric="canonical")
    target = man.random(6, 2, dtype=F64)
    x = geoopt.ManifoldParameter(man.random(6, 2, dtype=F64), manifold=man)
    opt = geoopt.optim.RiemannianAdam([x], lr=0.05)
    loss0 = float((x.detach() - target).square().sum())
    for _ in range(100):
        opt.zero_grad()
        (x - target).square().sum().backward()
        opt.step()
    assert float((x.detach() - target).square().sum()) < 0.1 * loss0
    assert man.constraint_error(x.detach()) < 1e-12


def test_num_parameters_is_dimension_times_streams_times_width():
    assert Stiefel(4, 4).num_parameters(8) == 6 * 4 * 8
    assert Stiefel(5, 3).num_parameters(1) == 9 * 5


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="p must be <= n"):
        Stiefel(3, 4)
    with pytest.raises(TypeError, match="n must be an int"):
        Stiefel(4.0, 2)
    with pytest.raises(ValueError, match="p must be >= 1"):
        Stiefel(4, 0)
    with pytest.raises(ValueError, match="metric"):
        Stiefel(4, 2, metric="riemannian")
    with pytest.raises(ValueError, match="retraction"):
        Stiefel(4, 2, retraction="exp")
    with pytest.raises(ValueError, match="backward"):
        Stiefel(4, 2, backward="exact")
    with pytest.raises(ValueError, match="trailing shape"):
        Stiefel(4, 2).parametrize(torch.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        Stiefel(4, 2).parametrize(torch.full((5,), float("nan")))
    with pytest.raises(ValueError, match="size"):
        Stiefel(4, 2).random(4, 3)
