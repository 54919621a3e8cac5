"""S-transforms of laws on ``[0, ∞)``: moments ↔ S-series, free products, the mean-log law.

Conventions (Voiculescu; Mingo & Speicher, *Free Probability and Random Matrices*, ch. 3):
for a law ``μ`` on ``[0, ∞)`` with moments ``m_k = ∫ x^k dμ`` and ``m_1 > 0``,

* moment series ``ψ(z) = Σ_{k≥1} m_k z^k``, its compositional inverse ``χ`` (``ψ(χ(w)) = w``);
* S-transform ``S(w) = χ(w) (1 + w) / w``, a power series ``Σ_j s_j w^j`` with
  ``s_0 = 1 / m_1``;
* Lagrange inversion gives the moments back:
  ``m_k = (1/k) [w^{k-1}] ((1 + w) / S(w))^k``;
* if ``a`` and ``b`` are free, ``S_{ab} = S_a S_b`` (for ``JJᵀ`` of a product of free
  factors, the S-transforms of the factors' Gram matrices multiply);
* mean-log law (Haagerup & Möller 2013, arXiv 1211.4457, Thm 4.1 / Prop 5.2; no atom at 0):
  ``E log λ = -∫_{-1}^{0} log S(u) du``; and the Lyapunov spectrum of a product of ``L``
  free copies: ``(1/(2L)) log λ`` tends in law to ``-½ log S(U - 1)``, ``U ~ Uniform(0, 1)``.

Series here are numpy float64 arrays of coefficients, index = power. The private series
helpers work on any field (``float``, ``fractions.Fraction``, ``sympy.Rational``) so that
:mod:`mhckit.theory.symbolic` runs the same algorithms exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np
from scipy import integrate

__all__ = [
    "s_from_moments",
    "moments_from_s",
    "free_product_moments",
    "multiply_series",
    "mean_log",
    "lyapunov_quantile",
]


# -- power series over any field (lists of coefficients) ----------------------------------
def _mul(a: Sequence, b: Sequence, order: int) -> list:
    """First ``order`` coefficients of the product of two series."""
    zero = a[0] * 0
    return [sum((a[i] * b[k - i] for i in range(k + 1) if i < len(a) and k - i < len(b)),
                zero) for k in range(order)]


def _reciprocal(a: Sequence, order: int) -> list:
    """First ``order`` coefficients of ``1 / a`` (needs ``a[0] != 0``)."""
    out = [1 / a[0]]
    for k in range(1, order):
        acc = sum((a[i] * out[k - i] for i in range(1, min(k, len(a) - 1) + 1)), a[0] * 0)
        out.append(-acc / a[0])
    return out


def _power(a: Sequence, k: int, order: int) -> list:
    """First ``order`` coefficients of ``a^k`` (``k >= 0``)."""
    out = [a[0] ** 0] + [a[0] * 0] * (order - 1)
    for _ in range(k):
        out = _mul(out, a, order)
    return out


def _lagrange_moments(s: Sequence, order: int) -> list:
    """``m_k = (1/k) [w^{k-1}] ((1+w)/S(w))^k`` for ``k = 1..order``."""
    one = s[0] ** 0
    phi = _mul([one, one], _reciprocal(s, order), order)
    return [_power(phi, k, k)[k - 1] / k for k in range(1, order + 1)]


def _s_series(moments: Sequence, order: int) -> list:
    """First ``order`` S-coefficients from ``m_1..m_order``: ``χ = ψ^{-1}`` by Lagrange
    inversion, ``[w^n] χ = (1/n) [z^{n-1}] (z/ψ(z))^n``, then ``S = (χ/w)(1 + w)``.

    ``O(order³)`` field operations (the powers of ``z/ψ`` are built one from the last).
    """
    m = list(moments)[:order]
    one = m[0] ** 0
    ratio = _reciprocal(m, order)  # z/ψ(z) = 1/(m_1 + m_2 z + ...)
    power, chi_over_w = [one] + [one * 0] * (order - 1), []
    for n in range(1, order + 1):
        power = _mul(power, ratio, order)
        chi_over_w.append(power[n - 1] / n)
    return _mul(chi_over_w, [one, one], order)


# -- public float64 API -------------------------------------------------------------------
def _as_series(values: object, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr}")
    return arr


def _is_rational(value: object) -> bool:
    return isinstance(value, int | np.integer | Fraction) and not isinstance(value, bool) or (
        type(value).__module__.startswith("sympy") and getattr(value, "is_rational", False))


def s_from_moments(moments: Sequence[float], *, rtol: float = 1e-8) -> np.ndarray:
    """S-transform coefficients ``s_0..s_{K-1}`` of a law with moments ``m_1..m_K``.

    ``S(w) = χ(w)(1 + w)/w`` with ``χ`` the compositional inverse of ``ψ(z) = Σ m_k z^k``
    (Lagrange inversion). ``s_j`` depends on ``m_1..m_{j+1}`` only. Needs ``m_1 > 0``.

    Accuracy. Rational moments (``int``, :class:`fractions.Fraction`, sympy rationals) are
    inverted exactly and each ``s_j`` is the correctly rounded float. Float moments are
    known to rounding only, and the map is ill-conditioned at high order (Fuss–Catalan
    ``L = 3``: ``m_22 ≈ 2·10¹⁸`` against ``s_21 = −253``); the error is estimated by
    inverting again with every moment moved by one ulp, and ``ValueError`` is raised when
    some ``|Δs_j| > rtol · max(|s_j|, |s_0|)``: pass exact moments or ask for fewer.
    """
    values = list(moments) if isinstance(moments, Sequence) else None
    if values and all(_is_rational(v) for v in values):
        exact = [Fraction(int(v.p), int(v.q)) if hasattr(v, "q") else Fraction(v)
                 for v in values]
        if exact[0] <= 0:
            raise ValueError(f"moments[0] (the mean m_1) must be > 0, got {exact[0]}")
        return np.array([float(v) for v in _s_series(exact, len(exact))])
    m = _as_series(moments, "moments")
    if m[0] <= 0:
        raise ValueError(f"moments[0] (the mean m_1) must be > 0, got {m[0]}")
    s = np.array(_s_series([float(v) for v in m], m.size))
    nudged = m * (1 + np.finfo(float).eps * (-1.0) ** np.arange(m.size))
    error = np.abs(np.array(_s_series([float(v) for v in nudged], m.size)) - s)
    scale = np.maximum(np.abs(s), abs(s[0]))
    bad = np.flatnonzero(~(error <= rtol * scale))
    if bad.size:
        raise ValueError(f"s_from_moments: float moments determine s_{bad[0]} only to "
                         f"{error[bad[0]] / scale[bad[0]]:.1e} relative (rtol={rtol:g}); "
                         f"pass exact moments (int/Fraction) or at most {bad[0]} of them")
    return s


def moments_from_s(s: Sequence[float], order: int | None = None) -> np.ndarray:
    """Moments ``m_1..m_order`` from S-coefficients by Lagrange inversion.

    ``m_k = (1/k) [w^{k-1}] ((1 + w) / S(w))^k``; ``order`` defaults to ``len(s)``
    (``m_k`` needs ``s_0..s_{k-1}``). Needs ``s_0 = 1/m_1 > 0``.
    """
    coeffs = _as_series(s, "s")
    order = coeffs.size if order is None else order
    if order > coeffs.size:
        raise ValueError(f"order must be <= len(s) = {coeffs.size}, got {order}")
    if coeffs[0] <= 0:
        raise ValueError(f"s[0] (= 1/m_1) must be > 0, got {coeffs[0]}")
    return np.array(_lagrange_moments([float(v) for v in coeffs[:order]], order))


def multiply_series(*series: Sequence[float], order: int | None = None) -> np.ndarray:
    """Truncated product of power series (S-transforms of free factors multiply)."""
    if not series:
        raise ValueError("multiply_series needs at least one series")
    arrays = [_as_series(s, f"series[{i}]") for i, s in enumerate(series)]
    order = min(a.size for a in arrays) if order is None else order
    out = [1.0] + [0.0] * (order - 1)
    for a in arrays:
        out = _mul(out, [float(v) for v in a], order)
    return np.array(out)


def free_product_moments(*moment_sequences: Sequence[float]) -> np.ndarray:
    """Moments of ``a_1 a_2 ⋯`` for free positive ``a_i`` (given by their moments).

    ``S_{a_1⋯a_p} = Π S_{a_i}``: each moment list is turned into its S-series, the series
    are multiplied and Lagrange inversion gives ``m_1..m_K``, ``K`` the shortest list.
    """
    series = [s_from_moments(m) for m in moment_sequences]
    return moments_from_s(multiply_series(*series))


def mean_log(s_transform: Callable[[np.ndarray], np.ndarray]) -> float:
    """``E log λ = -∫_{-1}^{0} log S(u) du`` for a law on ``(0, ∞)`` with no atom at 0.

    ``s_transform`` maps real ``u ∈ (-1, 0)`` (numpy array) to ``S(u) > 0``. Source:
    Haagerup & Möller 2013 (arXiv 1211.4457); for products of free factors it makes the
    mean log-eigenvalue additive, ``E log λ_{ab} = E log λ_a + E log λ_b``.
    """
    def integrand(u: float) -> float:
        value = float(np.real(s_transform(np.array([u]))[0]))
        if not value > 0:
            raise ValueError(f"s_transform must be > 0 on (-1, 0), got S({u}) = {value}")
        return -np.log(value)

    result, _ = integrate.quad(integrand, -1.0, 0.0, limit=200)
    return float(result)


def lyapunov_quantile(s_transform: Callable[[np.ndarray], np.ndarray] | object,
                      u: np.ndarray, *, atom: float = 0.0) -> np.ndarray:
    """Quantile function ``γ(u) = -½ log S(u - 1)`` of the Lyapunov exponents.

    For ``J_L = A_L ⋯ A_1`` with free, identically distributed ``A_l`` whose Gram law has
    S-transform ``S``, the exponents ``(1/(2L)) log λ(J_L J_Lᵀ)`` tend (``L → ∞`` after
    the width → ∞) to the law of ``γ(U)``, ``U ~ Uniform(0, 1)`` (Haagerup & Möller 2013,
    arXiv 1211.4457; Kargin 2008). ``γ`` is increasing; for Ginibre factors
    (``S = 1/(1+w)``) it is ``½ log u`` (Newman 1986).

    A law with mass ``a`` at 0 (``atom``; taken from ``s_transform.atom`` when a law is
    passed instead of its ``s_transform``) has that fraction of exponents at ``-∞``:
    ``γ(u) = -∞`` for ``u ≤ a`` (Marchenko–Pastur with ratio ``c > 1``: ``a = 1 − 1/c``).
    ``ValueError`` if ``S(u − 1) ≤ 0`` at some ``u > a``.
    """
    if hasattr(s_transform, "s_transform"):
        atom = float(s_transform.atom)
        s_transform = s_transform.s_transform
    u = np.asarray(u, dtype=np.float64)
    if np.any((u <= 0) | (u > 1)) or not np.all(np.isfinite(u)):
        raise ValueError("u must lie in (0, 1]")
    if not 0 <= atom < 1:
        raise ValueError(f"atom must be in [0, 1), got {atom}")
    out = np.full(u.shape, -np.inf)
    above = u > atom
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.real(s_transform(u[above] - 1.0))
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(f"s_transform must be > 0 on (atom - 1, 0] = ({atom - 1:g}, 0]; "
                         "for a law with an atom at 0 pass the law or atom=")
    out[above] = -0.5 * np.log(values)
    return out
