"""What a geoopt user expects of a manifold, checked against geoopt, scipy and closed forms.

Gaps found by running geoopt's and pymanopt's own test suites on mhckit: ``geoopt.Scaled``
of a Kronecker product, geoopt's tuple-style ``random((2, 3, 3))`` (needed by
``geoopt.ProductManifold``), exact ``expmap``/``logmap``/``dist`` where closed forms exist
(and an error, not a retraction, where they do not), and geoopt's Wolfe line search.
"""

import geoopt
import numpy as np
import pytest
import scipy.linalg
import torch

from mhckit import manifolds as M
from mhckit.optim import RiemannianAdam, RiemannianSGD

D = torch.float64


def test_geoopt_scaled_wraps_a_kronecker_product():
    kron = M.Kronecker(M.PermutationHull(2), M.PermutationHull(3))
    scaled = geoopt.Scaled(kron, 2.0)
    x = kron.random(dtype=D)
    u = kron.proju(x, torch.randn(6, 6, dtype=D))
    # geoopt's rule for retr: the argument u is rescaled by 1/scale
    torch.testing.assert_close(scaled.retr(x, 0.2 * u), kron.retr(x, 0.1 * u))
    assert float(kron.constraint_error(scaled.retr(x, 0.2 * u))) < 1e-10


SETS = {"permhull-3": lambda: M.PermutationHull(3),
        "kronecker-2x2": lambda: M.Kronecker(M.PermutationHull(2), M.PermutationHull(2)),
        "spectral-sphere-3": lambda: M.SpectralSphere(3),
        "unconstrained-3": lambda: M.Unconstrained(3),
        "birkhoff-3": lambda: M.Birkhoff(3),
        "stiefel-3x2": lambda: M.Stiefel(3, 2),
        "orthostochastic-2": lambda: M.Orthostochastic(2)}


@pytest.mark.parametrize("name", list(SETS))
def test_random_accepts_geoopts_tuple_size(name):
    m = SETS[name]()
    size = (2, *m.shape)
    assert m.random(size, dtype=D).shape == m.random(*size, dtype=D).shape == size
    assert m.random(dtype=D).shape == m.shape


def test_geoopt_product_manifold_of_mhckit_sets_trains_on_the_set():
    parts = [M.PermutationHull(3), M.Kronecker(M.PermutationHull(2), M.PermutationHull(2)),
             M.SpectralSphere(3), M.Unconstrained(3)]
    product = geoopt.ProductManifold(*((m, m.shape) for m in parts))
    torch.manual_seed(0)
    point = geoopt.ManifoldParameter(product.random(2, 9 + 16 + 9 + 9), manifold=product)
    optimizer = geoopt.optim.RiemannianAdam([point], lr=0.05)
    target = torch.randn(point.shape)
    for _ in range(5):
        optimizer.zero_grad()
        ((point - target) ** 2).sum().backward()
        optimizer.step()
    for m, piece in zip(parts, product.unpack_tensor(point.detach()), strict=True):
        assert float(m.constraint_error(piece).max()) <= m.constraint_atol(torch.float32)


# -- exact maps --------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "p"), [(5, 3), (4, 4), (6, 1)])
def test_stiefel_expmap_is_geoopts_exact_euclidean_exponential(n, p):
    m = M.Stiefel(n, p)
    x = m.random(3, n, p, dtype=D)
    u = m.proju(x, torch.randn(3, n, p, dtype=D))
    torch.testing.assert_close(m.expmap(x, u), geoopt.EuclideanStiefelExact().expmap(x, u))


def test_orthogonal_group_expmap_is_the_matrix_exponential_and_logmap_inverts_it():
    for metric in ("euclidean", "canonical"):
        m = M.Stiefel(4, 4, metric=metric)
        x = m.random(dtype=D)
        u = m.proju(x, torch.randn(4, 4, dtype=D))
        y = m.expmap(x, u)
        expected = x.numpy() @ scipy.linalg.expm(x.numpy().T @ u.numpy())
        np.testing.assert_allclose(y.numpy(), expected, atol=1e-12)
        torch.testing.assert_close(m.logmap(x, y), u, atol=1e-10, rtol=0)
        torch.testing.assert_close(m.dist(x, y), m.inner(x, u).sqrt())
        log = scipy.linalg.logm(x.numpy().T @ y.numpy())
        np.testing.assert_allclose(float(m.dist(x, y)) ** 2,
                                   (1.0 if metric == "euclidean" else 0.5)
                                   * np.linalg.norm(log) ** 2, rtol=1e-10)


def test_orthogonal_logmap_refuses_the_other_component():
    m = M.Stiefel(3, 3)
    x = torch.eye(3, dtype=D)
    with pytest.raises(ValueError, match="connected component"):
        m.logmap(x, torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=D)))


def test_canonical_stiefel_expmap_solves_the_geodesic_equation():
    """Edelman–Arias–Smith eq. 2.41: ``Ÿ + ẎẎᵀY + Y((YᵀẎ)² + ẎᵀẎ) = 0`` (canonical metric),
    by central differences along ``t ↦ Exp_X(tU)``."""
    m = M.Stiefel(6, 2, metric="canonical")
    x = m.random(dtype=D)
    u = m.proju(x, torch.randn(6, 2, dtype=D))
    t, h = 0.7, 1e-4
    y, ahead, behind = (m.expmap(x, s * u) for s in (t, t + h, t - h))
    velocity, acceleration = (ahead - behind) / (2 * h), (ahead - 2 * y + behind) / h ** 2
    residual = (acceleration + velocity @ velocity.mT @ y
                + y @ ((y.mT @ velocity) @ (y.mT @ velocity) + velocity.mT @ velocity))
    assert float(residual.abs().max()) < 1e-5
    assert float(m.constraint_error(y)) < 1e-13


def test_euclidean_stiefel_expmap_solves_the_geodesic_equation():
    """Euclidean metric: ``Ÿ + Y ẎᵀẎ = 0`` (the acceleration is normal, EAS eq. 2.7)."""
    m = M.Stiefel(6, 2)
    x = m.random(dtype=D)
    u = m.proju(x, torch.randn(6, 2, dtype=D))
    t, h = 0.7, 1e-4
    y, ahead, behind = (m.expmap(x, s * u) for s in (t, t + h, t - h))
    velocity, acceleration = (ahead - behind) / (2 * h), (ahead - 2 * y + behind) / h ** 2
    assert float((acceleration + y @ (velocity.mT @ velocity)).abs().max()) < 1e-5


def test_grassmann_dist_is_the_norm_of_scipys_principal_angles():
    m = M.Grassmann(7, 3)
    x, y = m.random(dtype=D), m.random(dtype=D)
    angles = scipy.linalg.subspace_angles(x.numpy(), y.numpy())
    np.testing.assert_allclose(float(m.dist(x, y)), np.linalg.norm(angles), rtol=1e-12)


def test_grassmann_exp_and_log_are_inverse():
    m = M.Grassmann(7, 3)
    x, y = m.random(dtype=D), m.random(dtype=D)
    v = m.logmap(x, y)
    assert float((x.mT @ v).abs().max()) < 1e-12  # horizontal
    z = m.expmap(x, v)
    torch.testing.assert_close(z @ z.mT, y @ y.mT, atol=1e-12, rtol=0)  # the same subspace
    u = m.proju(x, 0.3 * torch.randn(7, 3, dtype=D))
    torch.testing.assert_close(m.logmap(x, m.expmap(x, u)), u, atol=1e-12, rtol=0)


def test_unconstrained_maps_are_straight_lines():
    m = M.Unconstrained(3)
    x, y = m.random(dtype=D), m.random(dtype=D)
    torch.testing.assert_close(m.expmap(x, m.logmap(x, y)), y)
    torch.testing.assert_close(m.dist(x, y), (x - y).norm())


def test_kronecker_expmap_is_the_product_of_factor_exponentials():
    m = M.Kronecker(M.Stiefel(2, 2), M.Stiefel(3, 3))
    x = m.random(dtype=D)
    u = m.proju(x, torch.randn(6, 6, dtype=D))
    a, b = m.factors(x)
    ((ua, ub),) = m._components([a, b], u)
    expected = torch.kron(a @ torch.linalg.matrix_exp(a.mT @ ua),
                          b @ torch.linalg.matrix_exp(b.mT @ ub))
    torch.testing.assert_close(m.expmap(x, u), expected)


@pytest.mark.parametrize(("manifold", "method", "reason"), [
    (M.Birkhoff(3), "expmap", "Fisher metric"),
    (M.PermutationHull(3), "logmap", "Fisher metric"),
    (M.Stiefel(5, 2), "logmap", "thin frame"),
    (M.Stiefel(5, 2), "dist", "thin frame"),
    (M.SpectralSphere(3), "expmap", "no closed-form"),
    (M.Kronecker(M.PermutationHull(2), M.PermutationHull(2)), "expmap", "Fisher metric"),
    (M.Kronecker(M.Stiefel(2, 2), M.Stiefel(2, 2)), "logmap", "signs"),
], ids=lambda v: v if isinstance(v, str) else type(v).__name__)
def test_missing_exact_maps_raise_with_the_reason(manifold, method, reason):
    x = manifold.random(dtype=D)
    with pytest.raises(NotImplementedError, match=reason):
        getattr(manifold, method)(x, torch.zeros_like(x) if method == "expmap" else x)


def test_expmap_transp_is_no_retraction_in_disguise():
    m = M.Birkhoff(3)
    x = m.random(dtype=D)
    with pytest.raises(NotImplementedError, match="not the exponential"):
        m.expmap_transp(x, torch.zeros_like(x), torch.zeros_like(x))


@pytest.mark.parametrize("optimizer", [
    lambda p: RiemannianSGD([p], lr=0.1, momentum=0.9), lambda p: RiemannianAdam([p], lr=0.1),
    lambda p: geoopt.optim.RiemannianSGD([p], lr=0.1, momentum=0.9),
    lambda p: geoopt.optim.RiemannianAdam([p], lr=0.1)], ids=["sgd", "adam", "geoopt-sgd",
                                                               "geoopt-adam"])
def test_optimizers_step_with_the_retraction_not_expmap(optimizer):
    """Birkhoff has no exponential (``expmap`` raises): every optimizer must use ``retr``."""
    m = M.Birkhoff(3)
    point = geoopt.ManifoldParameter(m.random(), manifold=m)
    opt = optimizer(point)
    for _ in range(2):
        opt.zero_grad()
        (point ** 3).sum().backward()
        opt.step()
    assert float(m.constraint_error(point.detach())) < 1e-5


# -- geoopt's Wolfe line search -------------------------------------------------------------------
def procrustes(manifold, n, batch=None):
    """geoopt's tests/test_rlinesearch.py case: min ‖XA − B‖², B = QA, Q orthogonal; the
    start is put in Q's connected component so that the minimum is 0."""
    torch.manual_seed(42)
    a = torch.randn(n, 20, dtype=D)
    q = M.Stiefel(n, n).random(dtype=D)
    start = M.Stiefel(n, n).random(*(() if batch is None else (batch,)), n, n, dtype=D)
    start[..., 0] *= torch.sign(torch.linalg.det(start) * torch.linalg.det(q))[..., None]
    return a, q @ a, geoopt.ManifoldParameter(start[..., : manifold.p], manifold=manifold)


@pytest.mark.parametrize("method", ["armijo", "wolfe"])
@pytest.mark.parametrize("cg_method", ["steepest", "fr", "pr"])
@pytest.mark.parametrize("batch", [None, 16])
@pytest.mark.parametrize("retraction", ["cayley", "qr"])
def test_geoopt_line_search_solves_procrustes_on_our_orthogonal_group(method, cg_method,
                                                                       batch, retraction):
    m = M.Stiefel(10, 10, retraction=retraction, transport="differentiated")
    a, b, x = procrustes(m, 10, batch)
    optimizer = geoopt.optim.RiemannianLineSearch([x], line_search_method=method,
                                                  cg_method=cg_method)

    def closure():
        optimizer.zero_grad()
        loss = ((x @ a - b) ** 2).sum()
        loss.backward()
        return loss.item()

    for _ in range(400):
        loss = optimizer.step(closure)
        if optimizer.last_step_size is None or loss < 1e-4:
            break
    assert loss < 1e-4 * (1 if batch is None else batch)
    assert float(m.constraint_error(x.detach()).max()) < 1e-12


def test_projection_transport_breaks_the_wolfe_slope_and_the_differentiated_one_fixes_it():
    """``d/dt f(R_x(t d))`` read by the line search as ``⟨grad f(y), T(d)⟩`` against a central
    difference: the projection misses it at long steps, ``D R_x(t d)[d]`` is exact."""
    def slope(transport, t):
        torch.manual_seed(0)
        m = M.Stiefel(10, 4, transport=transport)
        x, target = m.random(dtype=D), torch.randn(10, 4, dtype=D)
        cost = lambda y: ((y - target) ** 2).sum() + (y ** 4).sum()  # noqa: E731
        start = x.clone().requires_grad_(True)
        cost(start).backward()
        d = -m.egrad2rgrad(x, start.grad)
        y, moved = m.retr_transp(x, t * d, d)
        leaf = y.clone().requires_grad_(True)
        cost(leaf).backward()
        claimed = float(m.inner(y, m.egrad2rgrad(y, leaf.grad), moved))
        h = 1e-6
        measured = (float(cost(m.retr(x, (t + h) * d))) - float(cost(m.retr(x, (t - h) * d)))
                    ) / (2 * h)
        return claimed, measured

    claimed, measured = slope("differentiated", 0.05)
    assert abs(claimed - measured) <= 1e-5 * abs(measured)
    claimed, measured = slope("projection", 0.05)
    assert abs(claimed - measured) > 1e-2 * abs(measured)


def test_differentiated_transport_matches_central_differences_of_the_retraction():
    for retraction, (n, p) in [("cayley", (5, 3)), ("qr", (5, 3)), ("cayley", (4, 4))]:
        m = M.Stiefel(n, p, retraction=retraction, transport="differentiated")
        x = m.random(dtype=D)
        u, v = (m.proju(x, torch.randn(n, p, dtype=D)) for _ in range(2))
        h = 1e-6
        expected = (m.retr(x, u + h * v) - m.retr(x, u - h * v)) / (2 * h)
        torch.testing.assert_close(m.transp_follow_retr(x, u, v), expected, atol=1e-8, rtol=0)


def test_differentiated_transport_needs_a_closed_form_retraction():
    with pytest.raises(ValueError, match="transport='differentiated' needs"):
        M.Stiefel(4, 2, retraction="iterative-cayley", transport="differentiated")
    with pytest.raises(ValueError, match="transport must be one of"):
        M.Stiefel(4, 2, transport="parallel")
