"""Gaussian expectations ``E f(h)``, ``h ~ N(0, q)``, to a stated accuracy, for any ``q > 0``.

Gauss–Hermite quadrature is exact for polynomials but not for the activations of a network:
``φ'(h)²`` of a saturating ``φ`` (tanh, erf) is a bump of width ``~1`` in ``h``, i.e. of
width ``1/√q`` in ``z = h/√q``, which a fixed rule in ``z`` misses as ``q`` grows, and a
kink (relu, hard-tanh) spoils its polynomial accuracy at every ``q``. Here

    E f(h) = ∫ f(√q z) φ(z) dz,        φ(z) = e^{-z²/2} / √(2π),

is integrated over ``|z| ≤ Z`` (``φ(Z)`` below the float64 range, so the tails are
zero in float64 for any ``f`` of polynomial growth) by adaptive Gauss–Kronrod
(QUADPACK ``qagp`` through :func:`scipy.integrate.quad`), split at

* the kinks of ``f`` (given in ``h``),
* the activation's own length scales ``|h| ∈ {4^k, k = -2..3}`` (``1/16 … 64``), and
* the Gaussian's ``|z| ∈ {1, 2, 4, 8, 16}``,

so both scales are resolved whatever ``q``. QUADPACK's error estimate is checked against
the requested relative accuracy and :class:`AccuracyError` is raised when it is not met:
no silently wrong number. :func:`gaussian_rule` gives the same panels as a composite
Gauss–Legendre rule (nodes and weights), for laws that need atoms.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import integrate

__all__ = ["AccuracyError", "gaussian_breakpoints", "gaussian_expectation", "gaussian_rule"]

#: ``φ(38.6) < 5e-324``: beyond it the Gaussian weight is 0 in float64.
Z_MAX = 38.6
#: Length scales of the activations, in ``h`` (``φ`` varies on ``|h| ~ 1``).
H_SCALES = tuple(4.0 ** k for k in range(-2, 4))
#: Length scales of the Gaussian weight, in ``z``.
Z_SCALES = (1.0, 2.0, 4.0, 8.0, 16.0)


class AccuracyError(ArithmeticError):
    """A quadrature could not reach the requested accuracy (its estimate is attached)."""


def _check_q(q: float) -> float:
    if isinstance(q, bool) or not isinstance(q, int | float | np.integer | np.floating):
        raise TypeError(f"q must be a real number, got {type(q).__name__}")
    if not (np.isfinite(q) and q > 0):
        raise ValueError(f"q must be finite and > 0, got {q}")
    return float(q)


def gaussian_breakpoints(q: float, kinks: Sequence[float] = ()) -> np.ndarray:
    """Sorted panel ends in ``z`` on ``[-Z, Z]``: ``±Z``, ``0``, the kinks ``/√q``, the
    activation scales ``±H_SCALES/√q`` and the Gaussian scales ``±Z_SCALES``."""
    root = np.sqrt(_check_q(q))
    inner = np.r_[0.0, np.asarray(kinks, dtype=np.float64) / root,
                  np.array(H_SCALES) / root, -np.array(H_SCALES) / root,
                  Z_SCALES, -np.array(Z_SCALES)]
    inner = inner[np.abs(inner) < Z_MAX]
    return np.unique(np.r_[-Z_MAX, inner, Z_MAX])


def gaussian_expectation(f: Callable[[np.ndarray], np.ndarray], q: float, *,
                         kinks: Sequence[float] = (), rtol: float = 1e-10,
                         atol: float = 0.0) -> float:
    """``E f(h)``, ``h ~ N(0, q)``, to ``|error| ≤ max(rtol·|E f|, atol)`` (QUADPACK estimate).

    ``f`` maps a float (or array) to a float; ``kinks`` are the points (in ``h``) where ``f``
    or a derivative jumps. Raises :class:`AccuracyError` when the estimate exceeds the
    tolerance (e.g. an odd ``f`` whose expectation is 0 needs ``atol``).
    """
    q = _check_q(q)
    if not (0 < rtol < 1 and atol >= 0):
        raise ValueError(f"rtol must be in (0, 1) and atol >= 0, got rtol={rtol}, atol={atol}")
    root = np.sqrt(q)
    points = gaussian_breakpoints(q, kinks)

    def integrand(z: float) -> float:
        return float(f(root * z)) * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        value, error = integrate.quad(integrand, points[0], points[-1], points=points[1:-1],
                                      epsabs=0.0, epsrel=rtol / 10,
                                      limit=100 + 4 * points.size)
    if not (np.isfinite(value) and error <= max(rtol * abs(value), atol)):
        raise AccuracyError(f"E f(h) at q={q:g}: estimate {value:.16g} with error "
                            f"{error:.2g}, above the requested rtol={rtol:g}, atol={atol:g}")
    return float(value)


def gaussian_rule(q: float, kinks: Sequence[float] = (), *, order: int = 16,
                  refine: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss–Legendre rule for ``E f(h)``: nodes ``h_i`` and weights ``w_i``.

    ``order`` nodes on each panel of :func:`gaussian_breakpoints`, every panel split into
    ``2^refine`` equal parts; ``w_i = φ(z_i)·(Legendre weight)``, ``Σ w_i = 1`` to
    rounding. Exact for ``f`` polynomial of degree ``< 2·order`` on each panel times the
    smooth Gaussian: callers check the moments they need against
    :func:`gaussian_expectation`.
    """
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an int >= 1, got {order!r}")
    ends = gaussian_breakpoints(q, kinks)
    ends = np.unique(np.concatenate([np.linspace(a, b, 2 ** refine + 1)
                                     for a, b in zip(ends[:-1], ends[1:], strict=True)]))
    x, w = np.polynomial.legendre.leggauss(order)
    half, mid = np.diff(ends)[:, None] / 2, (ends[:-1] + ends[1:])[:, None] / 2
    z = (mid + half * x).ravel()
    weights = (half * w).ravel() * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    return np.sqrt(q) * z, weights
