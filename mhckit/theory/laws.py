"""Spectral laws on ``[0, ∞)`` given by their S-transform, and free products of them.

A :class:`SpectralLaw` is the limiting eigenvalue law of a Gram matrix (``W Wᵀ``, ``D²``,
``J Jᵀ``). Free factors multiply their S-transforms, so the Jacobian law of a deep network
``J = D_L W_L ⋯ D_1 W_1`` is ``free_product((W-law, L), (D²-law, L))`` (Pennington,
Schoenholz & Ganguli 2017, arXiv 1711.04735; 2018, arXiv 1802.09979).

Every law offers ``moments(K)``, ``s_series(K)``, ``atom`` (mass at zero) and ``mean_log()``;
closed-form laws also ``s_transform(w)`` / ``s_log_derivative(w)`` for complex ``w``,
which :func:`mhckit.theory.density.spectral_density` uses.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from scipy import optimize, special

from mhckit.theory.transforms import mean_log, moments_from_s, multiply_series, s_from_moments

__all__ = [
    "SpectralLaw",
    "ClosedFormLaw",
    "PointMass",
    "MarchenkoPastur",
    "FussCatalan",
    "FreeMultiplicativeBM",
    "DiscreteLaw",
    "FreeProduct",
    "free_product",
]


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return float(value)


class SpectralLaw(ABC):
    """A probability law on ``[0, ∞)`` with mean ``> 0``, described by its S-transform."""

    @abstractmethod
    def s_series(self, order: int) -> np.ndarray:
        """Coefficients ``s_0..s_{order-1}`` of ``S(w)`` around ``w = 0``."""

    def moments(self, order: int) -> np.ndarray:
        """``m_1..m_order`` by Lagrange inversion of :meth:`s_series`."""
        return moments_from_s(self.s_series(order))

    @property
    def atom(self) -> float:
        """Mass at zero (``0`` unless the law says otherwise)."""
        return 0.0

    def factors(self) -> list[tuple[SpectralLaw, int]]:
        """The law as a free product ``[(base_law, power), ...]`` (itself, once, by default)."""
        return [(self, 1)]

    @abstractmethod
    def s_transform(self, w: np.ndarray) -> np.ndarray:
        """``S(w)``; real ``w ∈ (atom - 1, 0)`` at least (complex for closed forms)."""

    def mean_log(self) -> float:
        """``E log λ = -∫_{-1}^0 log S(u) du`` (Haagerup & Möller 2013, arXiv 1211.4457)."""
        if self.atom > 0:
            raise ValueError(f"mean_log is -inf for a law with an atom at 0 (mass {self.atom})")
        return mean_log(self.s_transform)


class ClosedFormLaw(SpectralLaw):
    """A law whose S-transform is an explicit analytic function of complex ``w``."""

    @abstractmethod
    def s_transform(self, w: np.ndarray) -> np.ndarray:
        """``S(w)`` for complex ``w`` (numpy, vectorised)."""

    @abstractmethod
    def s_log_derivative(self, w: np.ndarray) -> np.ndarray:
        """``S'(w) / S(w)`` for complex ``w``."""


class PointMass(ClosedFormLaw):
    """``δ_v``: the Gram law of a scaled orthogonal matrix (``W Wᵀ = v I``). ``S = 1/v``."""

    def __init__(self, value: float = 1.0) -> None:
        self.value = _positive(value, "value")

    def s_series(self, order: int) -> np.ndarray:
        return np.r_[1.0 / self.value, np.zeros(order - 1)]

    def s_transform(self, w):
        return np.full_like(np.asarray(w, dtype=np.complex128), 1.0 / self.value)

    def s_log_derivative(self, w):
        return np.zeros_like(np.asarray(w, dtype=np.complex128))


class MarchenkoPastur(ClosedFormLaw):
    """Marchenko–Pastur law of ``X Xᵀ / M`` for ``X`` ``N × M`` with i.i.d. entries of
    variance ``variance`` and ``ratio = N / M``: ``S(w) = 1 / (variance (1 + ratio·w))``.

    Mean ``variance``, variance ``ratio·variance²``; atom ``1 - 1/ratio`` at 0 if
    ``ratio > 1``. ``ratio = 1`` is the Gram law of a square Gaussian weight matrix with
    entries of variance ``σ_w²/N`` (``variance = σ_w²``).
    """

    def __init__(self, ratio: float = 1.0, variance: float = 1.0) -> None:
        self.ratio = _positive(ratio, "ratio")
        self.variance = _positive(variance, "variance")

    @property
    def atom(self) -> float:
        return max(0.0, 1.0 - 1.0 / self.ratio)

    def s_series(self, order: int) -> np.ndarray:
        return (-self.ratio) ** np.arange(order) / self.variance

    def s_transform(self, w):
        return 1.0 / (self.variance * (1.0 + self.ratio * np.asarray(w, dtype=np.complex128)))

    def s_log_derivative(self, w):
        return -self.ratio / (1.0 + self.ratio * np.asarray(w, dtype=np.complex128))


class FussCatalan(ClosedFormLaw):
    """Gram law of ``G_L ⋯ G_1`` for ``L`` free square Ginibre factors of variance ``v``.

    ``S(w) = v^{-L} (1 + w)^{-L}``; moments ``m_k = v^{Lk} C((L+1)k, k) / (Lk + 1)``
    (Fuss–Catalan numbers); support ``[0, v^L (L+1)^{L+1} / L^L]``. The density has the
    parametric form (Haagerup & Möller 2013, arXiv 1211.4457; see also Liu, Song & Wang
    2011, arXiv 1008.0271), for ``φ ∈ (0, π/(L+1))``::

        x(φ) = v^L sin((L+1)φ)^{L+1} / (sin φ · sin(Lφ)^L)
        ρ(x(φ)) = v^{-L} sin(φ)² sin(Lφ)^{L-1} / (π sin((L+1)φ)^L)
    """

    def __init__(self, depth: int, variance: float = 1.0) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an int >= 1, got {depth!r}")
        self.depth = depth
        self.variance = _positive(variance, "variance")

    def s_series(self, order: int) -> np.ndarray:
        j = np.arange(order)
        return (-1.0) ** j * special.binom(self.depth + j - 1, j) / self.variance ** self.depth

    def s_transform(self, w):
        w = np.asarray(w, dtype=np.complex128)
        return (1.0 + w) ** (-self.depth) / self.variance ** self.depth

    def s_log_derivative(self, w):
        return -self.depth / (1.0 + np.asarray(w, dtype=np.complex128))

    def parametric_density(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x(φ), ρ(x(φ)))`` for ``φ ∈ (0, π/(L+1))`` (decreasing ``x``)."""
        L, v = self.depth, self.variance ** self.depth
        phi = np.asarray(phi, dtype=np.float64)
        if np.any((phi <= 0) | (phi >= np.pi / (L + 1))):
            raise ValueError(f"phi must lie in (0, pi/{L + 1})")
        top = np.sin((L + 1) * phi)
        x = v * top ** (L + 1) / (np.sin(phi) * np.sin(L * phi) ** L)
        rho = np.sin(phi) ** 2 * np.sin(L * phi) ** (L - 1) / (np.pi * top ** L) / v
        return x, rho

    @property
    def support_edge(self) -> float:
        """Right edge ``v^L (L+1)^{L+1} / L^L`` of the support."""
        L = self.depth
        return self.variance ** L * (L + 1) ** (L + 1) / L ** L


class FreeMultiplicativeBM(ClosedFormLaw):
    """Gram law of free multiplicative Brownian motion at time ``t``: ``S = e^{-t(1+2w)}``.

    Limit of the residual Jacobian ``Π_{l=1}^L (I + ε B_l)`` with ``B_l`` free
    R-diagonal, ``τ(B_l B_lᵀ) = β``, as ``L → ∞`` with ``t = L ε² β`` fixed (Tarnowski,
    Warchoł, Jastrzębski, Tabor & Nowak 2019, arXiv 1809.08848): one block has
    ``S = 1 - ε²β (1 + 2w) + O(ε⁴)``. Moments ``m_1 = e^t``, ``m_2 = (1 + 2t) e^{2t}``;
    ``E log λ = 0`` and the Lyapunov quantile ``-½ log S(u-1) = t(u - ½)``.
    """

    def __init__(self, t: float) -> None:
        self.t = _positive(t, "t")

    def s_series(self, order: int) -> np.ndarray:
        j = np.arange(order)
        return math.exp(-self.t) * (-2 * self.t) ** j / special.factorial(j)

    def s_transform(self, w):
        return np.exp(-self.t * (1.0 + 2.0 * np.asarray(w, dtype=np.complex128)))

    def s_log_derivative(self, w):
        return np.full_like(np.asarray(w, dtype=np.complex128), -2.0 * self.t)


class DiscreteLaw(SpectralLaw):
    """``Σ_j p_j δ_{λ_j}`` (``λ_j ≥ 0``): e.g. ``D²`` of an activation by Gauss–Hermite.

    Moments are exact; ``S`` is implicit: ``S(w) = χ(1 + w)/w`` with
    ``ψ(χ) = Σ_j p_j λ_j χ / (1 - λ_j χ) = w``. For real ``w ∈ (atom - 1, 0)`` the root
    ``χ < 0`` is unique (``ψ`` increases on ``(-∞, 0)``) and found by bracketing; for the
    density the solver carries ``χ`` as an extra unknown.
    """

    def __init__(self, atoms: Sequence[float], weights: Sequence[float]) -> None:
        atoms = np.asarray(atoms, dtype=np.float64).ravel()
        weights = np.asarray(weights, dtype=np.float64).ravel()
        if atoms.shape != weights.shape or atoms.size == 0:
            raise ValueError(f"atoms and weights must be non-empty and of equal length, got "
                             f"{atoms.size} and {weights.size}")
        if np.any(atoms < 0) or not np.all(np.isfinite(atoms)):
            raise ValueError("atoms must be finite and >= 0")
        if np.any(weights < 0) or abs(weights.sum() - 1) > 1e-9:
            raise ValueError(f"weights must be >= 0 and sum to 1, got sum {weights.sum()}")
        if float(atoms @ weights) <= 0:
            raise ValueError("the law must have a positive mean")
        self.atoms, self.weights = atoms, weights / weights.sum()

    @property
    def atom(self) -> float:
        return float(self.weights[self.atoms == 0].sum())

    def moments(self, order: int) -> np.ndarray:
        return np.array([self.weights @ self.atoms ** k for k in range(1, order + 1)])

    def s_series(self, order: int) -> np.ndarray:
        """Exact for the float atoms and weights: their moments as fractions, inverted in
        rational arithmetic (:func:`~mhckit.theory.transforms.s_from_moments`)."""
        atoms = [Fraction(float(a)) for a in self.atoms]
        weights = [Fraction(float(p)) for p in self.weights]
        total = sum(weights)
        moments = [sum(p * a ** k for p, a in zip(weights, atoms, strict=True)) / total
                   for k in range(1, order + 1)]
        return s_from_moments(moments)

    def psi(self, z: np.ndarray) -> np.ndarray:
        """``ψ(z) = Σ_j p_j λ_j z / (1 - λ_j z)`` (complex ``z``, vectorised)."""
        z = np.asarray(z, dtype=np.complex128)[..., None]
        return (self.weights * self.atoms * z / (1 - self.atoms * z)).sum(-1)

    def psi_derivative(self, z: np.ndarray) -> np.ndarray:
        """``ψ'(z) = Σ_j p_j λ_j / (1 - λ_j z)²``."""
        z = np.asarray(z, dtype=np.complex128)[..., None]
        return (self.weights * self.atoms / (1 - self.atoms * z) ** 2).sum(-1)

    def s_transform(self, w):
        w = np.asarray(w, dtype=np.float64)
        if np.any((w <= self.atom - 1) | (w >= 0)):
            raise ValueError(f"DiscreteLaw.s_transform needs real w in ({self.atom - 1}, 0)")
        scale = float(self.atoms.max())

        def chi(target: float) -> float:
            lo = -1.0 / scale
            while np.real(self.psi(lo)) > target:
                lo *= 2.0
            return optimize.brentq(lambda c: float(np.real(self.psi(c))) - target, lo, 0.0,
                                   xtol=1e-300, rtol=4 * np.finfo(float).eps)

        chis = np.array([chi(float(t)) for t in w.ravel()]).reshape(w.shape)
        return chis * (1 + w) / w


class FreeProduct(SpectralLaw):
    """Free multiplicative convolution ``μ_1^{⊠k_1} ⊠ μ_2^{⊠k_2} ⊠ ⋯``: ``S = Π S_i^{k_i}``.

    The atom at zero is ``max_i`` of the factors' atoms (Belinschi 2003).
    """

    def __init__(self, factors: Sequence[tuple[SpectralLaw, int]]) -> None:
        flat: list[tuple[SpectralLaw, int]] = []
        for law, power in factors:
            if not isinstance(law, SpectralLaw):
                raise TypeError(f"factors must hold SpectralLaw, got {type(law).__name__}")
            if isinstance(power, bool) or not isinstance(power, int) or power < 0:
                raise ValueError(f"powers must be ints >= 0, got {power!r}")
            flat += [(base, power * inner) for base, inner in law.factors() if power > 0]
        if not flat:
            raise ValueError("free product of no factors")
        self._factors = flat

    def factors(self) -> list[tuple[SpectralLaw, int]]:
        return list(self._factors)

    @property
    def atom(self) -> float:
        return max(law.atom for law, _ in self._factors)

    def s_series(self, order: int) -> np.ndarray:
        series = [law.s_series(order) for law, power in self._factors for _ in range(power)]
        return multiply_series(*series, order=order)

    def s_transform(self, w):
        out = 1.0
        for law, power in self._factors:
            out = out * law.s_transform(w) ** power
        return out


def free_product(*factors: SpectralLaw | tuple[SpectralLaw, int]) -> FreeProduct:
    """``free_product(a, (b, 3))`` = ``a ⊠ b^{⊠3}``: laws, or ``(law, power)`` pairs."""
    return FreeProduct([f if isinstance(f, tuple) else (f, 1) for f in factors])
