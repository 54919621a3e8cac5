"""Second order: ``ehess2rhess`` of every set against Manopt's ``checkhessian`` (finite
differences of the cost along a curve), and the measured order of each retraction."""

import pytest
import torch

from mhckit import manifolds as M
from mhckit.testing import check_hessian, retraction_order
from mhckit.testing.slopes import STEPS

D = torch.float64


def polynomial(x):
    weights = torch.randn(x.shape, dtype=D)
    return lambda y: (weights * y).sum() + (y ** 4).sum() / 4 + (y[..., 0, :] ** 3).sum()


def subspace_cost(x):
    """A function of the subspace ``YYᵀ`` only: a cost on the Grassmann quotient."""
    n = x.shape[-2]
    weights = torch.randn(n, n, dtype=D)
    return lambda y: (weights * (y @ y.mT)).sum() + ((y @ y.mT) ** 3).sum()


# Sets whose Taylor test runs along an exact geodesic (or, for SpectralSphere's flat interior,
# the straight retraction), so the slope must be 3 at any point.
GEODESIC = {
    "stiefel-5x3": (M.Stiefel(5, 3), polynomial),
    "stiefel-5x3-canonical": (M.Stiefel(5, 3, metric="canonical"), polynomial),
    "orthogonal-4": (M.Stiefel(4, 4), polynomial),
    "orthogonal-4-canonical": (M.Stiefel(4, 4, metric="canonical"), polynomial),
    "grassmann-5x2": (M.Grassmann(5, 2), subspace_cost),
    "orthostochastic-3": (M.Orthostochastic(3), polynomial),
    "orthostochastic-2-s2": (M.Orthostochastic(2, 2), polynomial),
    "spectral-sphere-4": (M.SpectralSphere(4), polynomial),
    "unconstrained-3": (M.Unconstrained(3), polynomial),
    "kronecker-orthogonal-2x3": (M.Kronecker(M.Stiefel(2, 2), M.Stiefel(3, 3)), polynomial),
    "kronecker-spectral-orthostochastic": (
        M.Kronecker(M.SpectralSphere(2), M.Orthostochastic(2)), polynomial),
}


@pytest.mark.parametrize("case", list(GEODESIC))
def test_ehess2rhess_passes_checkhessian_along_geodesics(case):
    manifold, make_cost = GEODESIC[case]
    x = manifold.random(dtype=D)
    check = check_hessian(manifold, make_cost(x), x)
    assert check.ok, check
    assert abs(check.slope - 3) < 0.3, check


def fisher_second_order(manifold):
    """Birkhoff's retraction corrected to zero covariant acceleration: ``R_x(tU)`` has
    acceleration ``Π_x(U ⊙ U / 2X)`` for the Fisher connection (Christoffel form
    ``−U ⊙ V / 2X``), so ``R_x(v − ½Π_x(v ⊙ v / 2X))`` is a second-order curve."""
    def curve(x, v):
        return manifold.retr(x, v - 0.5 * manifold.proju(x, v * v / (2 * x)))
    return curve


@pytest.mark.parametrize("manifold", [
    # the same Birkhoff.ehess2rhess as PermutationHull, behind a 500-iteration Sinkhorn
    pytest.param(M.Birkhoff(3, tol=1e-13, max_iter=500), marks=pytest.mark.slow),
    M.PermutationHull(4)], ids=["birkhoff", "permhull"])
def test_fisher_hessian_passes_checkhessian_along_a_second_order_curve(manifold):
    """Steps up to 10^-1.5: past them the remainder of this draw changes sign (a dip)."""
    x = manifold.random(dtype=D)
    check = check_hessian(manifold, polynomial(x), x, curve=fisher_second_order(manifold),
                          steps=STEPS[:14])
    assert check.ok, check


def normal_cost(manifold, x):
    """A cost with a critical point at ``x`` and a nonzero (normal) Euclidean gradient:
    ``⟨W, Y⟩ + Σ c ⊙ (Y − x)² + Σ (Y − x)³`` with ``egrad2rgrad(x, W) = 0``."""
    size = x.numel()
    basis = torch.eye(size, dtype=D).reshape(size, *x.shape)
    rgrad = torch.stack([manifold.egrad2rgrad(x, b).reshape(-1) for b in basis], dim=1)
    _, sigma, vh = torch.linalg.svd(rgrad)
    kernel = vh[sigma < 1e-9 * sigma[0]]
    normal = (torch.randn(kernel.shape[0], dtype=D) @ kernel).reshape(x.shape)
    assert float(manifold.egrad2rgrad(x, normal).abs().max()) < 1e-10
    curvature = torch.rand(x.shape, dtype=D)
    return lambda y: ((normal * y).sum() + (curvature * (y - x) ** 2).sum()
                      + ((y - x) ** 3).sum())


@pytest.mark.parametrize("manifold", [
    M.Birkhoff(3, tol=1e-13, max_iter=500),
    M.Kronecker(M.PermutationHull(2), M.PermutationHull(3)),
    M.Kronecker(M.PermutationHull(2), M.Stiefel(2, 2)),
], ids=["birkhoff", "kronecker-permhull", "kronecker-permhull-orthogonal"])
def test_hessian_at_a_critical_point_is_retraction_independent(manifold):
    """At a critical point ``f(R_x(td))`` has second derivative ``⟨Hess f[d], d⟩`` for any
    retraction; the Euclidean gradient there is normal, not zero, so the curvature
    (Weingarten) terms of ``ehess2rhess`` are exercised."""
    x = manifold.random(dtype=D)
    check = check_hessian(manifold, normal_cost(manifold, x), x, curve="retr")
    assert check.ok, check


class StiefelWithoutWeingarten(M.Stiefel):
    def ehess2rhess(self, x, egrad, ehess, u):
        return self.proju(x, ehess)


class BirkhoffWithoutChristoffel(M.Birkhoff):
    def ehess2rhess(self, x, egrad, ehess, u):
        from mhckit.functional.birkhoff_tangent import birkhoff_tangent_projection as proj

        _, dgrad = torch.func.jvp(lambda p, g: proj(p, p * g, on_support=True),
                                  (x, egrad), (u, ehess))
        return proj(x, dgrad)


def test_check_hessian_rejects_a_hessian_without_its_curvature_term():
    stiefel = StiefelWithoutWeingarten(5, 3)
    x = stiefel.random(dtype=D)
    check = check_hessian(stiefel, polynomial(x), x)
    assert not check.ok and check.slope < 2.3, check
    birkhoff = BirkhoffWithoutChristoffel(3, tol=1e-13, max_iter=500)
    x = birkhoff.random(dtype=D)
    check = check_hessian(birkhoff, polynomial(x), x, curve=fisher_second_order(birkhoff))
    assert not check.ok and check.slope < 2.3, check


def test_check_hessian_measures_the_symmetry_of_the_hessian():
    class Asymmetric(M.SpectralSphere):
        def ehess2rhess(self, x, egrad, ehess, u):
            return self.proju(x, ehess + u.mT @ x @ x)

    manifold = Asymmetric(3)
    x = manifold.random(dtype=D)
    check = check_hessian(manifold, polynomial(x), x)
    assert not check.ok and check.symmetry_error > 1e-3, check


def test_check_hessian_refuses_an_unknown_curve():
    m = M.Unconstrained(2)
    with pytest.raises(ValueError, match="curve must be"):
        check_hessian(m, lambda y: (y ** 2).sum(), m.random(dtype=D), curve="geodesic")


# Measured orders (dist(R_x(tu), Exp_x(tu)) = O(t^{order+1})), docs/testing.md's table.
ORDERS = {
    "stiefel-5x3-cayley": (M.Stiefel(5, 3), 1),
    "stiefel-5x3-qr": (M.Stiefel(5, 3, retraction="qr"), 1),
    "stiefel-5x3-canonical-cayley": (M.Stiefel(5, 3, metric="canonical"), 2),
    "stiefel-5x3-canonical-qr": (M.Stiefel(5, 3, metric="canonical", retraction="qr"), 1),
    "orthogonal-4-cayley": (M.Stiefel(4, 4), 2),
    "orthogonal-4-iterative-cayley": (M.Stiefel(4, 4, retraction="iterative-cayley"), 2),
    "orthogonal-4-qr": (M.Stiefel(4, 4, retraction="qr"), 1),
    "grassmann-5x2-cayley": (M.Grassmann(5, 2), 2),
    "grassmann-5x2-qr": (M.Grassmann(5, 2, retraction="qr"), 2),
    "grassmann-5x2-iterative-cayley": (M.Grassmann(5, 2, retraction="iterative-cayley"), 2),
    "kronecker-orthogonal-2x3": (M.Kronecker(M.Stiefel(2, 2), M.Stiefel(3, 3)), 2),
}


@pytest.mark.parametrize("case", list(ORDERS))
def test_measured_retraction_order(case):
    manifold, order = ORDERS[case]
    x = manifold.random(dtype=D)
    check = retraction_order(manifold, x, torch.randn(x.shape, dtype=D))
    assert check.order == order, check


def test_an_exact_retraction_has_infinite_order():
    m = M.Unconstrained(3)
    assert retraction_order(m, m.random(dtype=D), torch.randn(3, 3, dtype=D)).order == float("inf")
