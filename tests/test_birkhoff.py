"""Birkhoff(n) and its Fisher-metric geometry; one test per known defect of geoopt 0.5.1's
BirkhoffPolytope (two are geoopt issue #249), each also showing that geoopt's version fails."""

import math

import geoopt
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mhckit.functional import birkhoff_tangent_projection, sinkhorn, support_divisor
from mhckit.manifolds import Birkhoff

F64 = torch.float64


def tangent(m, x):
    return m.proju(x, torch.randn(x.shape, dtype=x.dtype))


def permutation(n, dtype=F64):
    return torch.eye(n, dtype=dtype)[torch.randperm(n)]


# -- geoopt's defects, one test each ------------------------------------------------------

def test_proju_is_idempotent_unlike_geoopt():
    m, x = Birkhoff(5), Birkhoff(5).random(5, 5, dtype=F64)
    u = torch.randn(5, 5, dtype=F64)
    v = m.proju(x, u)
    torch.testing.assert_close(m.proju(x, v), v, atol=1e-14, rtol=0)
    g = geoopt.BirkhoffPolytope()
    w = g.proju(x, u)
    assert float((g.proju(x, w) - w).abs().max()) > 1e-2


def test_rgrad_represents_the_gradient_in_the_metric_unlike_geoopt():
    """<egrad2rgrad(x, G), V>_x = <G, V>; geoopt's metric divides by n, off by a factor n."""
    n = 4
    m, x = Birkhoff(n), Birkhoff(n).random(n, n, dtype=F64)
    grad, v = torch.randn(n, n, dtype=F64), tangent(m, x)
    euclidean = (grad * v).sum()
    torch.testing.assert_close(m.inner(x, m.egrad2rgrad(x, grad), v), euclidean)
    g = geoopt.BirkhoffPolytope()
    torch.testing.assert_close(g.inner(x, g.egrad2rgrad(x, grad), v), euclidean / n)


def test_egrad2rgrad_is_defined_at_the_identity_unlike_geoopt():
    """At I the tangent space is {0} (tangent vectors vanish off the diagonal and have zero
    row sums): the Riemannian gradient is 0, with no singular solve."""
    eye, grad = torch.eye(4, dtype=F64), torch.randn(4, 4, dtype=F64)
    assert torch.equal(Birkhoff(4).egrad2rgrad(eye, grad), torch.zeros(4, 4, dtype=F64))
    with pytest.raises(RuntimeError, match="singular"):
        geoopt.BirkhoffPolytope().egrad2rgrad(eye, grad)


def test_retr_at_a_permutation_has_no_nan_unlike_geoopt():
    p = permutation(5)
    assert torch.equal(Birkhoff(5).retr(p, torch.zeros_like(p)), p)
    assert torch.equal(Birkhoff(5).retr(p, Birkhoff(5).proju(p, torch.randn_like(p))), p)
    assert torch.isnan(geoopt.BirkhoffPolytope().retr(p, torch.zeros_like(p))).all()


def test_point_check_rejects_negative_entries_unlike_geoopt():
    x = torch.tensor([[2.0, -1.0, 0.0], [-1.0, 2.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    assert not Birkhoff(3).check_point_on_manifold(x)
    assert geoopt.BirkhoffPolytope().check_point_on_manifold(x)


# -- the tangent projection ---------------------------------------------------------------

@given(n=st.integers(2, 7), scale=st.floats(0.1, 4.0))
def test_proju_is_orthogonal_in_the_fisher_metric(n, scale):
    m = Birkhoff(n)
    x = m.random(n, n, dtype=F64, scale=scale)
    u = torch.randn(n, n, dtype=F64)
    pu, v = m.proju(x, u), tangent(m, x)
    assert float(pu.sum(-1).abs().max()) <= 1e-12 and float(pu.sum(-2).abs().max()) <= 1e-12
    normal = u - pu
    scale = float((m.inner(x, normal) * m.inner(x, v)).sqrt())  # Cauchy–Schwarz bound
    assert abs(float(m.inner(x, normal, v))) <= 1e-12 * scale


def test_proju_fixes_tangent_vectors():
    m = Birkhoff(6)
    x = m.random(3, 6, 6, dtype=F64)
    v = tangent(m, x)
    torch.testing.assert_close(m.proju(x, v), v, atol=1e-13, rtol=0)


def test_projection_at_a_permutation_is_zero_and_finite():
    p = permutation(6)
    out = birkhoff_tangent_projection(p, torch.randn(6, 6, dtype=F64))
    assert torch.equal(out, torch.zeros_like(out))


def test_projection_near_a_permutation_is_tangent_and_finite():
    x = sinkhorn(12.0 * permutation(6) + torch.randn(6, 6, dtype=F64), tol=1e-13, max_iter=500)
    out = birkhoff_tangent_projection(x, x * torch.randn(6, 6, dtype=F64))
    assert torch.isfinite(out).all()
    assert float(out.sum(-1).abs().max()) <= 1e-12 and float(out.sum(-2).abs().max()) <= 1e-12


def test_projection_passes_gradcheck_in_float64():
    x = Birkhoff(4).random(4, 4, dtype=F64).requires_grad_(True)
    u = torch.randn(4, 4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(birkhoff_tangent_projection, (x, u))


# -- points: projx, retr, random, parametrize ---------------------------------------------

def test_projx_is_the_kl_projection_not_the_euclidean_one():
    """projx(X) = diag(a) X diag(b): log projx(X) - log X has the form f1ᵀ + 1gᵀ, which
    characterises the minimiser of KL(P ‖ X) over doubly stochastic P."""
    x = torch.rand(5, 5, dtype=F64) + 0.05
    p = Birkhoff(5, tol=1e-13, max_iter=500).projx(x)
    d = (p / x).log()
    torch.testing.assert_close(d - d[:, :1] - d[:1, :] + d[0, 0], torch.zeros_like(d),
                               atol=1e-10, rtol=0)

    def kl(a):
        return (a * (a / x).log() - a + x).sum()

    others = Birkhoff(5).random(200, 5, 5, dtype=F64)
    assert all(float(kl(p)) <= float(kl(q)) for q in others)


def test_projx_fixes_a_doubly_stochastic_point_and_handles_zero_entries():
    m = Birkhoff(4)
    x = m.random(4, 4, dtype=F64)
    torch.testing.assert_close(m.projx(x), x, atol=1e-6, rtol=0)
    p = permutation(4)
    torch.testing.assert_close(m.projx(p), p)
    assert float(m.constraint_error(m.projx(torch.zeros(4, 4)))) <= 1e-6


def test_retr_of_zero_returns_the_point():
    m = Birkhoff(5)
    x = m.random(5, 5, dtype=F64)
    torch.testing.assert_close(m.retr(x, torch.zeros_like(x)), x, atol=1e-6, rtol=0)


def test_retr_clips_huge_steps_and_stays_on_the_set():
    m = Birkhoff(5)
    x = m.random(5, 5, dtype=F64)
    y = m.retr(x, 1e6 * tangent(m, x))
    assert torch.isfinite(y).all() and float(m.constraint_error(y)) <= 1e-6


def test_inner_is_finite_at_a_permutation():
    p = permutation(4)
    u = Birkhoff(4).proju(p, torch.randn_like(p))
    assert float(Birkhoff(4).inner(p, u)) == 0.0


def test_random_is_sinkhorn_of_scaled_gaussian_logits():
    m = Birkhoff(4)
    x = m.random(2, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(3), scale=2.0)
    logits = torch.randn(2, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(x, sinkhorn(2.0 * logits))


@pytest.mark.parametrize("n", [1, 2, 4, 16])
def test_identity_param_is_near_identity_with_gradient_of_order_one_twentieth(n):
    m = Birkhoff(n)
    z = m.identity_param(dtype=F64).requires_grad_(True)
    x = m.parametrize(z)
    torch.testing.assert_close(x.diagonal(), torch.full((n,), 1.0 if n == 1 else 0.95,
                                                        dtype=F64))
    (grad,) = torch.autograd.grad(x[0, 0], z)
    assert n == 1 or float(grad.abs().max()) > 0.01


def test_parametrize_backward_modes_agree_at_convergence():
    z = torch.randn(3, 4, 4, dtype=F64, requires_grad=True)
    weights = torch.randn(3, 4, 4, dtype=F64)
    grads = [torch.autograd.grad((Birkhoff(4, tol=1e-14, max_iter=500, backward=b)
                                  .parametrize(z) * weights).sum(), z)[0]
             for b in ("implicit", "unrolled")]
    torch.testing.assert_close(grads[0], grads[1], atol=1e-10, rtol=0)


def test_constraint_error_is_the_largest_violation():
    m = Birkhoff(2)
    assert float(m.constraint_error(torch.tensor([[0.5, 0.6], [0.5, 0.4]]))) == pytest.approx(0.1)
    assert float(m.constraint_error(torch.tensor([[1.2, -0.2], [-0.2, 1.2]]))) == pytest.approx(0.2)
    assert m.constraint_error(torch.full((3, 5, 2, 2), 0.5)).shape == (3, 5)


# -- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("args, kwargs, error, match", [
    ((0,), {}, ValueError, "n must be >= 1"),
    ((2.0,), {}, TypeError, "n must be an int"),
    ((3,), {"tol": -1.0}, ValueError, "tol"),
    ((3,), {"max_iter": 0}, ValueError, "max_iter"),
    ((3,), {"backward": "exact"}, ValueError, "backward"),
])
def test_bad_constructor_arguments_raise_naming_them(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        Birkhoff(*args, **kwargs)


def test_bad_method_arguments_raise_naming_them():
    m = Birkhoff(3)
    x, u = m.random(3, 3), torch.randn(3, 3)
    with pytest.raises(ValueError, match="x must be doubly stochastic"):
        m.proju(torch.randn(3, 3), u)
    with pytest.raises(ValueError, match="x must be doubly stochastic"):
        m.retr(2 * x, u)
    with pytest.raises(ValueError, match="u must have trailing shape"):
        m.egrad2rgrad(x, torch.randn(3, 4))
    with pytest.raises(ValueError, match="x must have trailing shape"):
        m.projx(torch.rand(3, 4))
    with pytest.raises(TypeError, match="z must have a floating dtype"):
        m.parametrize(torch.ones(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="u must be finite"):
        m.retr(x, torch.full((3, 3), math.nan))
    with pytest.raises(ValueError, match="x must be finite"):
        m.projx(torch.full((3, 3), math.inf))
    with pytest.raises(ValueError, match="size must have trailing shape"):
        m.random(2, 4, 4)


# -- vector transport and the step safeguard ------------------------------------------------

@given(n=st.integers(2, 6), seed=st.integers(0, 2**16), scale=st.floats(0.1, 3.0))
def test_transport_is_linear_into_the_new_tangent_space_and_the_identity_in_place(n, seed, scale):
    torch.manual_seed(seed)
    m = Birkhoff(n)
    x, y = m.random(2, n, n, dtype=F64, scale=scale), m.random(2, n, n, dtype=F64, scale=scale)
    v, w = tangent(m, x), tangent(m, x)
    moved = m.transp(x, y, v)
    atol = 1e-12 * (1.0 + float(moved.abs().max()))  # v ⊙ y / x is large where x is tiny
    torch.testing.assert_close(m.proju(y, moved), moved, atol=atol, rtol=0)  # in T_y
    torch.testing.assert_close(moved.sum(-1), torch.zeros(2, n, dtype=F64), atol=atol, rtol=0)
    torch.testing.assert_close(m.transp(x, y, 2.0 * v - w), 2.0 * moved - m.transp(x, y, w),
                               atol=3 * atol, rtol=0)
    torch.testing.assert_close(m.transp(x, x, v), v, atol=1e-12, rtol=0)


def test_transport_keeps_log_coordinates_so_momentum_shrinks_with_its_entry():
    """From ``x = 11ᵀ/2`` to ``y`` whose diagonal is ten times smaller, the tangent
    ``v = -0.1 E`` (``E = [[1, -1], [-1, 1]]``, which spans every tangent space of ``B(2)``)
    becomes ``a E`` with ``a = <v ⊙ y/x, E>_y / <E, E>_y = -0.8 / (40 + 2/0.95)``: about a
    fifth of ``v``, where a plain projection onto ``T_y`` would return ``v`` itself."""
    m = Birkhoff(2)
    x = torch.full((2, 2), 0.5, dtype=F64)
    y = torch.tensor([[0.05, 0.95], [0.95, 0.05]], dtype=F64)
    e = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=F64)
    torch.testing.assert_close(m.transp(x, y, -0.1 * e), -0.8 / (40 + 2 / 0.95) * e)
    torch.testing.assert_close(m.proju(y, -0.1 * e), -0.1 * e)


def test_transport_vanishes_where_the_source_point_is_zero():
    m = Birkhoff(3)
    x = torch.tensor([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]], dtype=F64)
    v = tangent(m, x)
    moved = m.transp(x, x, v)
    assert bool((moved[x == 0] == 0).all()) and bool(torch.isfinite(moved).all())


def test_max_step_bounds_the_shrink_of_every_entry_and_leaves_safe_steps_alone():
    torch.manual_seed(0)
    m = Birkhoff(4)
    x = m.random(3, 4, 4, dtype=F64)
    u = tangent(m, x)
    long, short = 100.0 * u, 1e-3 * u
    t = m.max_step(x, long)
    assert t.shape == (3, 1, 1) and bool((t < 1).all())
    assert float((t * long / x).min()) >= -1.0 - 1e-12  # no entry shrinks by more than e
    assert bool((m.max_step(x, short) == 1).all())


def test_support_divisor_divides_on_the_support_and_gives_zero_off_it():
    x = torch.tensor([[0.5, 0.0], [-0.0, 2.0]])
    u = torch.tensor([[1.0, 3.0], [-4.0, 1.0]])
    assert torch.equal(u / support_divisor(x), torch.tensor([[2.0, 0.0], [0.0, 0.5]]))
