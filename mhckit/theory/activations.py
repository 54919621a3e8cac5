"""Mean-field signal propagation and the law of ``D² = φ'(h)²``, to a stated accuracy.

For a deep network ``h^l = W^l φ(h^{l-1}) + b^l`` with ``W_ij ~ N(0, σ_w²/N)`` and
``b_i ~ N(0, σ_b²)``, the pre-activation variance follows the map (Poole et al. 2016,
arXiv 1606.05340; Pennington, Schoenholz & Ganguli 2017, arXiv 1711.04735)

    q^l = σ_w² E_{h~N(0, q^{l-1})}[φ(h)²] + σ_b²,   q* its fixed point,

and at ``q*`` the Jacobian ``J = Π D_l W_l`` has ``D_l = diag φ'(h^l)`` with ``h^l ~ N(0, q*)``:
``χ = σ_w² E[φ'(h)²]`` and ``m_1(JJᵀ) = χ^L``.

Accuracy: every expectation is a closed form where one exists (``h ~ N(0, q)``, ``a = 1/√q``)

* linear: ``E φ² = q``, ``E φ'^{2k} = 1``; relu: ``E φ² = q/2``, ``P(φ' = 1) = ½``;
* hard-tanh: ``E φ² = q·P(3/2, 1/(2q)) + erfc(1/√(2q))`` (``P`` the regularised lower
  incomplete gamma: ``E[z² 1{|z| < a}] = P(3/2, a²/2)``), ``P(φ' = 1) = erf(1/√(2q))``;
* erf: ``E φ² = (2/π) arctan(2q/√(1 + 4q))`` (the arcsine law of Williams 1998,
  ``(2/π) arcsin(2q/(1+2q))``, rewritten to stay accurate as ``q → ∞``) and
  ``E φ'^{2k} = (4/π)^k / √(1 + 4kq)``,

and otherwise adaptive quadrature (:func:`mhckit.theory.quadrature.gaussian_expectation`),
relative error ``≤ rtol = 1e-10`` by its error estimate, or :class:`AccuracyError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import linalg, special

from mhckit.theory.laws import DiscreteLaw
from mhckit.theory.quadrature import (
    AccuracyError,
    _check_q,
    gaussian_expectation,
    gaussian_rule,
)

__all__ = ["Activation", "ACTIVATIONS", "get_activation", "gaussian_expectation",
           "variance_map", "fixed_point_q", "chi", "derivative_moment", "derivative_law",
           "AccuracyError"]

#: Relative accuracy of every expectation computed here (closed forms: rounding).
RTOL = 1e-10


@dataclass(frozen=True)
class Activation:
    """An activation ``φ`` with its derivative and what is known about it in closed form.

    ``kinks``: points where ``φ'`` jumps (quadrature splits there). ``square_mean(q)``:
    ``E φ(h)²``; ``derivative_moment(q, k)``: ``E φ'(h)^{2k}``;
    ``unit_slope_probability(q)``: ``P(φ'(h) = 1)`` for piecewise-linear ``φ`` with
    ``φ' ∈ {0, 1}`` (``h ~ N(0, q)`` throughout). ``None``: computed by quadrature.
    """

    name: str
    function: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray], np.ndarray]
    unit_slope_probability: Callable[[float], float] | None = None
    kinks: tuple[float, ...] = ()
    square_mean: Callable[[float], float] | None = None
    derivative_moment: Callable[[float, int], float] | None = None


def _gelu_derivative(h):
    return special.ndtr(h) + h * np.exp(-h * h / 2) / np.sqrt(2 * np.pi)


def _sech2(h):
    """``1 − tanh² h = 4e^{-2|h|}/(1 + e^{-2|h|})²`` (no cancellation, no overflow)."""
    e = np.exp(-2 * np.abs(h))
    return 4 * e / (1 + e) ** 2


def _hard_tanh_square_mean(q: float) -> float:
    return float(q * special.gammainc(1.5, 0.5 / q) + special.erfc(np.sqrt(0.5 / q)))


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation("linear", lambda h: h, np.ones_like, lambda q: 1.0,
                         square_mean=lambda q: q),
    "relu": Activation("relu", lambda h: np.maximum(h, 0), lambda h: (h > 0) * 1.0,
                       lambda q: 0.5, kinks=(0.0,), square_mean=lambda q: q / 2),
    "hard_tanh": Activation("hard_tanh", lambda h: np.clip(h, -1, 1),
                            lambda h: (np.abs(h) < 1) * 1.0,
                            lambda q: float(special.erf(np.sqrt(0.5 / q))),
                            kinks=(-1.0, 1.0), square_mean=_hard_tanh_square_mean),
    "tanh": Activation("tanh", np.tanh, _sech2),
    "erf": Activation("erf", special.erf, lambda h: 2 / np.sqrt(np.pi) * np.exp(-h * h),
                      square_mean=lambda q: float(2 / np.pi * np.arctan(
                          2 * q / np.sqrt(1 + 4 * q))),
                      derivative_moment=lambda q, k: float(
                          (4 / np.pi) ** k / np.sqrt(1 + 4 * k * q))),
    "sigmoid": Activation("sigmoid", special.expit,
                          lambda h: special.expit(h) * special.expit(-h)),
    "gelu": Activation("gelu", lambda h: h * special.ndtr(h), _gelu_derivative),
}


def get_activation(activation: str | Activation) -> Activation:
    """Look up an activation by name (one of :data:`ACTIVATIONS`) or pass one through."""
    if isinstance(activation, Activation):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return ACTIVATIONS[activation]


def _check_sigma(value: float, name: str) -> float:
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return float(value)


def variance_map(activation: str | Activation, q: float, sigma_w: float = 1.0,
                 sigma_b: float = 0.0) -> float:
    """``q' = σ_w² E[φ(h)²] + σ_b²`` with ``h ~ N(0, q)`` (relative error ``≤ 1e-10``)."""
    act = get_activation(activation)
    q = _check_q(q)
    sigma_w, sigma_b = _check_sigma(sigma_w, "sigma_w"), _check_sigma(sigma_b, "sigma_b")
    if act.square_mean is not None:
        mean = act.square_mean(q)
    else:
        mean = gaussian_expectation(lambda h: act.function(h) ** 2, q, kinks=act.kinks,
                                    rtol=RTOL)
    return sigma_w ** 2 * mean + sigma_b ** 2


def fixed_point_q(activation: str | Activation, sigma_w: float = 1.0, sigma_b: float = 0.0,
                  *, q0: float = 1.0, tol: float = 1e-12, max_iter: int = 10_000) -> float:
    """Fixed point ``q* > 0`` of :func:`variance_map`, by iterating from ``q0`` until the
    relative step is ``≤ tol``.

    Raises ``ValueError`` if the iteration leaves ``(0, ∞)``, decays geometrically to
    ``0`` (``σ_b = 0`` with an ordered ``σ_w``: ``q* = 0`` is no positive fixed point) or
    does not settle within ``max_iter`` steps (e.g. relu with ``σ_w² ≠ 2``, where ``q``
    grows or decays geometrically; at ``σ_w² = 2``, ``σ_b = 0`` every ``q`` is fixed and
    ``q0`` is returned).
    """
    q = _check_q(q0)
    for _ in range(max_iter):
        nxt = variance_map(activation, q, sigma_w, sigma_b)
        if not (np.isfinite(nxt) and nxt > 1e-300):
            break
        if abs(nxt - q) <= tol * q:
            return nxt
        if sigma_b == 0 and nxt < 1e-12 * q0 and nxt < q:
            break  # geometric decay towards q* = 0
        q = nxt
    raise ValueError(f"no fixed point q* > 0 for activation={get_activation(activation).name!r}"
                     f", sigma_w={sigma_w}, sigma_b={sigma_b} (iteration reached q={q:.3g})")


def derivative_moment(activation: str | Activation, q: float, k: int = 1) -> float:
    """``E[φ'(h)^{2k}]``, ``h ~ N(0, q)``: closed form or quadrature (relative ``≤ 1e-10``)."""
    act = get_activation(activation)
    q = _check_q(q)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if act.unit_slope_probability is not None:
        return float(act.unit_slope_probability(q))
    if act.derivative_moment is not None:
        return act.derivative_moment(q, k)
    return gaussian_expectation(lambda h: act.derivative(h) ** (2 * k), q, kinks=act.kinks,
                                rtol=RTOL)


def chi(activation: str | Activation, q: float, sigma_w: float = 1.0) -> float:
    """``χ = σ_w² E[φ'(h)²]``, ``h ~ N(0, q)``: the per-layer gain of ``m_1(JJᵀ)``."""
    return _check_sigma(sigma_w, "sigma_w") ** 2 * derivative_moment(activation, q, 1)


#: Moments of :func:`derivative_law` checked against :func:`derivative_moment`.
CHECKED_MOMENTS = 4
#: Atoms of smaller mass are dropped (their total, ``< 1e-28``, is far below ``RTOL``).
NEGLIGIBLE_MASS = 1e-30


def _gauss_compression(values: np.ndarray, weights: np.ndarray, size: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The ``size``-point Gauss rule of the discrete measure ``Σ w_i δ_{v_i}``: nodes and
    weights with the same moments of order ``≤ 2·size − 1``. Lanczos on ``diag(v)`` from
    ``√w`` (Stieltjes procedure, with full reorthogonalisation), then the eigen-decomposition
    of the Jacobi matrix (Golub & Welsch 1969)."""
    size = min(size, np.unique(values).size)
    basis = np.zeros((values.size, size))
    alpha, beta = np.zeros(size), np.zeros(max(size - 1, 0))
    basis[:, 0] = np.sqrt(weights / weights.sum())
    for j in range(size):
        u = values * basis[:, j]
        alpha[j] = basis[:, j] @ u
        for _ in range(2):
            u -= basis[:, : j + 1] @ (basis[:, : j + 1].T @ u)
        if j + 1 < size:
            beta[j] = np.linalg.norm(u)
            if beta[j] <= 1e-14 * np.abs(values).max():
                size = j + 1
                break
            basis[:, j + 1] = u / beta[j]
    nodes, vectors = linalg.eigh_tridiagonal(alpha[:size], beta[: size - 1])
    return np.clip(nodes, 0.0, None), vectors[0] ** 2


def derivative_law(activation: str | Activation, q: float, *, atoms: int = 24,
                   order: int = 16, max_refine: int = 4) -> DiscreteLaw:
    """Law of ``D² = φ'(h)²`` for ``h ~ N(0, q)``.

    Two exact atoms ``{0, 1}`` for piecewise-linear ``φ``. Otherwise: the values
    ``φ'(h_i)²`` of the composite Gauss–Legendre rule of
    :func:`~mhckit.theory.quadrature.gaussian_rule` (``order`` nodes per panel, nodes of
    mass ``< 1e-30`` dropped), compressed to its ``atoms``-point Gauss rule in ``d²``
    (same moments up to order ``2·atoms − 1``); the panels are refined (halved, up to
    ``max_refine`` times) until the moments ``E d^{2k}``, ``k ≤ 4``, agree with
    :func:`derivative_moment` to relative ``1e-10``, else :class:`AccuracyError`.
    At huge ``q`` most of the mass sits where ``φ'²`` underflows (tanh: ``|h| > 186``,
    mass ``0.83`` at ``q = 10⁶``): it becomes an atom at or next to ``0``.
    """
    act = get_activation(activation)
    q = _check_q(q)
    if isinstance(atoms, bool) or not isinstance(atoms, int) or atoms < 1:
        raise ValueError(f"atoms must be an int >= 1, got {atoms!r}")
    if act.unit_slope_probability is not None:
        p = float(act.unit_slope_probability(q))
        return DiscreteLaw([0.0, 1.0], [1.0 - p, p]) if p < 1 else DiscreteLaw([1.0], [1.0])
    targets = np.array([derivative_moment(act, q, k) for k in range(1, CHECKED_MOMENTS + 1)])
    for refine in range(max_refine + 1):
        nodes, weights = gaussian_rule(q, act.kinks, order=order, refine=refine)
        keep = weights > NEGLIGIBLE_MASS  # the far Gaussian tail: no atoms of mass ~1e-300
        values, masses = _gauss_compression(act.derivative(nodes[keep]) ** 2, weights[keep],
                                            atoms)
        law = DiscreteLaw(values, masses / masses.sum())
        error = np.abs(law.moments(CHECKED_MOMENTS) / targets - 1).max()
        if error <= RTOL:
            return law
    raise AccuracyError(f"derivative_law({act.name!r}, q={q:g}): moments off by {error:.2g} "
                        f"relative after {max_refine} refinements (order {order})")
