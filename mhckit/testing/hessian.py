"""Second order: Manopt's ``checkhessian`` and the measured order of a retraction.

``check_hessian`` follows Manopt (Boumal et al., ``checkhessian``; Boumal, "An introduction
to optimization on smooth manifolds", 2023, §6.8): along a curve ``c(t)`` with ``c(0) = x``,
``ċ(0) = d`` and zero initial acceleration (a geodesic, or a second-order retraction),

    ``f(c(t)) = f(x) + t ⟨grad f, d⟩_x + t²/2 ⟨Hess f(x)[d], d⟩_x + O(t³)``,

so the remainder has slope 3 on a log-log plot when ``ehess2rhess`` is right (slope 2 when
it is not); and ``Hess f(x)`` is self-adjoint, ``⟨H[d], e⟩_x = ⟨d, H[e]⟩_x``. The curve is
``expmap`` where the manifold has an exact one, else ``retr`` (then the slope test is valid
only for a second-order retraction or at a critical point, where ``grad f = 0``).

``retraction_order`` measures ``dist(R_x(tu), Exp_x(tu))``: ``O(t²)`` for a first-order
retraction, ``O(t³)`` (or exact) for a second-order one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import geoopt
import torch

from mhckit.testing.slopes import STEPS, eps, fit_slope, inexact_tol, slope_ok

__all__ = ["HessianCheck", "OrderCheck", "check_hessian", "retraction_order"]

MIN_HESSIAN_SLOPE = 2.7


@dataclass(frozen=True)
class HessianCheck:
    """Second-order Taylor remainder along ``curve`` against ``t``, and the symmetry of
    the Hessian."""

    steps: tuple[float, ...]
    errors: tuple[float, ...]
    slope: float            # ≈ 3 for a right Hessian; NaN if nothing rises above noise
    noise: float
    symmetry_error: float   # |⟨H d, e⟩ − ⟨d, H e⟩| / (‖H d‖‖e‖ + ‖d‖‖H e‖)
    tangent_error: float    # ‖proju(x, H d) − H d‖ / ‖H d‖
    curve: str              # "expmap" or "retr"
    ok: bool


@dataclass(frozen=True)
class OrderCheck:
    """``dist(R_x(tu), Exp_x(tu))`` against ``t`` (``‖u‖_x = 1``)."""

    steps: tuple[float, ...]
    errors: tuple[float, ...]
    slope: float
    noise: float
    order: float            # slope − 1 rounded; ``inf`` when R = Exp to rounding


def _has_expmap(manifold: geoopt.Manifold, x: torch.Tensor, d: torch.Tensor) -> bool:
    try:
        manifold.expmap(x, 0 * d)
    except NotImplementedError:
        return False
    return True


def _unit_tangent(manifold, x, direction, generator):
    if direction is None:
        direction = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    d = manifold.proju(x, direction)
    return d / manifold.inner(x, d).sum().sqrt()


def check_hessian(manifold: geoopt.Manifold, cost: Callable[[torch.Tensor], torch.Tensor],
                  x: torch.Tensor, direction: torch.Tensor | None = None, *,
                  steps: Sequence[float] = STEPS, generator: torch.Generator | None = None,
                  curve: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                  ) -> HessianCheck:
    """Check ``manifold.ehess2rhess`` against a scalar ``cost`` at ``x`` (module docstring).

    The Euclidean gradient and Hessian-vector products come from autograd, so ``cost`` must
    be twice differentiable. ``curve`` is ``"expmap"``, ``"retr"``, ``None`` (``expmap``
    if the manifold implements it exactly, else ``retr``) or a map ``(x, v) ↦ c`` with
    ``c(t) = curve(x, t d)`` of zero initial covariant acceleration (e.g. a retraction
    corrected to second order). Run in float64.
    """
    if not (curve in (None, "expmap", "retr") or callable(curve)):
        raise ValueError(f"curve must be None, 'expmap', 'retr' or a callable, got {curve!r}")
    x = x.detach()
    d = _unit_tangent(manifold, x, direction, generator)
    e = _unit_tangent(manifold, x, None, generator)
    with torch.enable_grad():
        leaf = x.clone().requires_grad_(True)
        value = cost(leaf)
        (egrad,) = torch.autograd.grad(value, leaf, create_graph=True)
        ehess_d, ehess_e = (torch.autograd.grad((egrad * w).sum(), leaf, retain_graph=True)[0]
                            for w in (d, e))
    egrad = egrad.detach()
    f0 = float(value.detach())
    hess_d = manifold.ehess2rhess(x, egrad, ehess_d.detach(), d)
    hess_e = manifold.ehess2rhess(x, egrad, ehess_e.detach(), e)
    rate = float(manifold.inner(x, manifold.egrad2rgrad(x, egrad), d).sum())
    curvature = float(manifold.inner(x, hess_d, d).sum())
    if curve is None:
        curve = "expmap" if _has_expmap(manifold, x, d) else "retr"
    move = (curve if callable(curve) else
            manifold.expmap if curve == "expmap" else manifold.retr)
    curve = curve if isinstance(curve, str) else getattr(curve, "__name__", "callable")
    with torch.no_grad():
        errors = tuple(abs(float(cost(move(x, t * d))) - f0 - t * rate - t * t / 2 * curvature)
                       for t in steps)
    noise = (10 * eps(x.dtype) * (abs(f0) + abs(rate) + abs(curvature))
             + inexact_tol(manifold) * float(egrad.abs().sum()))
    slope = fit_slope(steps, errors, noise)
    tiny = torch.finfo(x.dtype).tiny
    norm_d, norm_e = (float(manifold.inner(x, h).sum().clamp_min(0).sqrt())
                      for h in (hess_d, hess_e))
    symmetry = abs(float(manifold.inner(x, hess_d, e).sum())
                   - float(manifold.inner(x, d, hess_e).sum())) / max(norm_d + norm_e, tiny)
    tangent_error = float((manifold.proju(x, hess_d) - hess_d).norm()
                          / hess_d.norm().clamp_min(tiny))
    rtol = eps(x.dtype) ** 0.5
    ok = (slope_ok(slope, errors, noise, MIN_HESSIAN_SLOPE) and symmetry <= rtol
          and tangent_error <= rtol)
    return HessianCheck(tuple(steps), errors, slope, noise, symmetry, tangent_error, curve, ok)


def _distance(manifold, x, y):
    try:
        return float(manifold.dist(x, y).sum())
    except NotImplementedError:
        return float((x - y).norm())


def retraction_order(manifold: geoopt.Manifold, x: torch.Tensor, u: torch.Tensor, *,
                     steps: Sequence[float] = STEPS[:-2]) -> OrderCheck:
    """Measure the order of ``manifold.retr`` against its exact ``expmap`` at ``x`` along
    the tangent ``proju(x, u)`` (unit norm). ``dist`` compares the two points where the
    manifold has it (quotients such as Grassmann), else the Frobenius norm. Run in float64.
    """
    x = x.detach()
    u = _unit_tangent(manifold, x, u.detach(), None)
    with torch.no_grad():
        errors = tuple(_distance(manifold, manifold.retr(x, t * u), manifold.expmap(x, t * u))
                       for t in steps)
    noise = 10 * eps(x.dtype) * (float(x.norm()) + 1.0)
    slope = fit_slope(steps, errors, noise)
    if math.isnan(slope):
        order = math.inf if slope_ok(slope, errors, noise, 0.0) else math.nan
    else:
        order = float(round(slope - 1))
    return OrderCheck(tuple(steps), errors, slope, noise, order)
