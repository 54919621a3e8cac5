"""Numerical checks of a manifold's geometry, for anyone building a new mixer.

Each check returns a frozen dataclass with the numbers it measured and ``ok``; nothing is
asserted, so a failing check can be printed and inspected::

    from mhckit.manifolds import Birkhoff
    from mhckit.testing import check_gradient, check_retraction, check_tangent

    m = Birkhoff(4)
    x = m.random(4, 4, dtype=torch.float64)
    u = torch.randn(4, 4, dtype=torch.float64)
    check_tangent(m, x, u).ok          # proju idempotent and tangent, egrad2rgrad consistent
    check_retraction(m, x, u).slope    # ≈ 2: R_x(tu) = x + tu + O(t²)
    check_gradient(m, lambda y: (y ** 3).sum(), x).slope   # ≈ 2, as Manopt's checkgradient

The slope tests follow Manopt (Boumal et al., ``checkgradient``): an error that is ``O(t²)``
has slope 2 on a log-log plot, one that is ``O(t)`` (a wrong gradient, a retraction that is
not first order) has slope 1. Errors under the rounding floor (``noise``: ``10·eps`` of the
values involved, plus ``tol`` times their size for an inexact set such as Sinkhorn's) are
ignored; the slope is fitted on the five smallest steps above ``10·noise`` and must be
``>= 1.7``; with nothing to fit, the smallest three quarters of the steps must be under the
floor (an exact second-order agreement; :mod:`mhckit.testing.slopes`). Run them in float64:
in float32 the usable range of steps is two decades.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import geoopt
import torch

from mhckit.testing.slopes import STEPS, eps, fit_slope, inexact_tol, slope_ok

__all__ = ["GradientCheck", "RetractionCheck", "TangentCheck",
           "check_gradient", "check_retraction", "check_tangent"]

MIN_SLOPE = 1.7


@dataclass(frozen=True)
class GradientCheck:
    """Taylor remainder ``|f(R_x(t d)) - f(x) - t <grad f, d>_x|`` against ``t``."""

    steps: tuple[float, ...]
    errors: tuple[float, ...]
    slope: float          # fitted log-log slope; NaN if fewer than 3 errors exceed 10·noise
    noise: float          # rounding (and tolerance) floor under which errors are ignored
    tangent_error: float  # ‖proju(x, grad) - grad‖ / ‖grad‖: is the gradient tangent?
    ok: bool


@dataclass(frozen=True)
class RetractionCheck:
    """First-order agreement ``‖R_x(t u) - (x + t u)‖`` against ``t`` (``‖u‖ = 1``)."""

    steps: tuple[float, ...]
    errors: tuple[float, ...]
    slope: float
    noise: float
    zero_error: float             # ‖R_x(0) - x‖
    max_constraint_error: float   # over the points R_x(t u) (NaN for non-mhckit manifolds)
    ok: bool


@dataclass(frozen=True)
class TangentCheck:
    """Tangent-space machinery at ``x``: ``proju`` and ``egrad2rgrad``."""

    tangent: bool             # manifold.check_vector_on_tangent(x, proju(x, u))
    tangent_reason: str | None
    idempotence_error: float  # ‖proju(proju u) - proju u‖ / ‖proju u‖
    metric_error: float       # |inner(x, egrad2rgrad(x, g), v) - <g, v>| / (‖g‖ ‖v‖), v = proju u
    rtol: float
    ok: bool


def check_gradient(manifold: geoopt.Manifold, cost: Callable[[torch.Tensor], torch.Tensor],
                   x: torch.Tensor, direction: torch.Tensor | None = None, *,
                   steps: Sequence[float] = STEPS,
                   generator: torch.Generator | None = None) -> GradientCheck:
    """Check ``egrad2rgrad`` and ``retr`` against a scalar ``cost`` at the point ``x``.

    The Euclidean gradient comes from autograd; ``grad f = egrad2rgrad(x, ∇f)``. Along a unit
    tangent ``d`` (``proju`` of a Gaussian, or ``direction``),
    ``f(R_x(t d)) = f(x) + t <grad f, d>_x + O(t²)`` holds iff the gradient is right and the
    retraction is first order, so the remainder has slope 2.
    """
    x = x.detach()
    with torch.enable_grad():
        leaf = x.clone().requires_grad_(True)
        value = cost(leaf)
        (egrad,) = torch.autograd.grad(value, leaf)
    f0 = float(value.detach())
    grad = manifold.egrad2rgrad(x, egrad)
    if direction is None:
        direction = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    d = manifold.proju(x, direction)
    d = d / manifold.inner(x, d).sum().sqrt()
    rate = float(manifold.inner(x, grad, d).sum())
    with torch.no_grad():
        errors = tuple(abs(float(cost(manifold.retr(x, t * d))) - f0 - t * rate) for t in steps)
    noise = (10 * eps(x.dtype) * (abs(f0) + abs(rate))
             + inexact_tol(manifold) * float(egrad.abs().sum()))
    slope = fit_slope(steps, errors, noise)
    tangent_error = float((manifold.proju(x, grad) - grad).norm()
                          / grad.norm().clamp_min(torch.finfo(x.dtype).tiny))
    ok = slope_ok(slope, errors, noise, MIN_SLOPE) and tangent_error <= eps(x.dtype) ** 0.5
    return GradientCheck(tuple(steps), errors, slope, noise, tangent_error, ok)


def check_retraction(manifold: geoopt.Manifold, x: torch.Tensor, u: torch.Tensor, *,
                     steps: Sequence[float] = STEPS) -> RetractionCheck:
    """Check that ``R_x(0) = x`` and ``R_x(t u) = x + t u + O(t²)`` for tangent ``proju(x, u)``.

    ``u`` is projected and scaled to unit Frobenius norm; a retraction that is only a
    projection back onto the set without the right first-order term has slope 1.
    """
    x = x.detach()
    u = manifold.proju(x, u.detach())
    u = u / u.norm()
    scale = float(x.norm()) + 1.0
    tol = inexact_tol(manifold)
    constraint = getattr(manifold, "constraint_error", None)
    with torch.no_grad():
        zero_error = float((manifold.retr(x, 0 * u) - x).norm())
        points = [manifold.retr(x, t * u) for t in steps]
        errors = tuple(float((y - x - t * u).norm()) for y, t in zip(points, steps, strict=True))
        worst = (max(float(constraint(y).max()) for y in points) if constraint else math.nan)
    noise = 10 * eps(x.dtype) * scale + tol * math.sqrt(x.numel())
    slope = fit_slope(steps, errors, noise)
    ok = slope_ok(slope, errors, noise, MIN_SLOPE) and zero_error <= 10 * noise
    if constraint is not None:
        ok = ok and worst <= 10 * manifold.constraint_atol(x.dtype)
    return RetractionCheck(tuple(steps), errors, slope, noise, zero_error, worst, ok)


def check_tangent(manifold: geoopt.Manifold, x: torch.Tensor, u: torch.Tensor,
                  g: torch.Tensor | None = None, *, rtol: float | None = None) -> TangentCheck:
    """Check ``proju`` (lands in the tangent space, idempotent) and ``egrad2rgrad``.

    ``egrad2rgrad`` must represent the Euclidean differential in the manifold's metric:
    ``inner(x, egrad2rgrad(x, g), v) = <g, v>`` (Frobenius) for every tangent ``v``; checked
    with ``v = proju(x, u)`` and ``g`` (default ``u``). ``rtol`` defaults to ``√eps``.
    """
    x, u = x.detach(), u.detach()
    g = u if g is None else g.detach()
    rtol = eps(x.dtype) ** 0.5 if rtol is None else rtol
    tiny = torch.finfo(x.dtype).tiny
    v = manifold.proju(x, u)
    tangent, reason = manifold.check_vector_on_tangent(x, v, explain=True, ok_point=True)
    idempotence = float((manifold.proju(x, v) - v).norm() / v.norm().clamp_min(tiny))
    lhs = manifold.inner(x, manifold.egrad2rgrad(x, g), v).sum()
    metric = float((lhs - (g * v).sum()).abs() / (g.norm() * v.norm()).clamp_min(tiny))
    ok = bool(tangent) and idempotence <= rtol and metric <= rtol
    return TangentCheck(bool(tangent), reason, idempotence, metric, rtol, ok)
