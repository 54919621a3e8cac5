"""Spectral density of a law from its S-transform (Newton with shrinking-η continuation).

For ``z = x + iη`` in the upper half-plane, ``w = M(z) = Σ_k m_k z^{-k}`` solves

    z · w · S(w) = 1 + w,        G(z) = (1 + w)/z,        ρ(x) = -lim_{η→0} Im G(x + iη) / π

(the S-transform relation ``ψ(χ(w)) = w`` written at ``χ = 1/z``). For a free product
``S = Π_i S_i^{k_i}`` the closed-form factors enter through ``S_i(w)``; a discrete factor
(e.g. ``D²`` by Gauss–Hermite) has no closed-form ``S``, so its ``χ_a`` (with
``S_a = χ_a (1 + w)/w``) is carried as an extra unknown with ``ψ_a(χ_a) = w``.

Continuation: at ``η_0 ≫ support`` the root is the large-``|z|`` branch ``w ≈ m_1/z``;
``η`` then shrinks geometrically, each Newton solve starting from the previous root, which
keeps ``w`` on the physical branch (``Im G < 0``).

Atoms are not in ``ρ``: they are returned with their masses (:func:`law_atoms`). For a free
product on ``[0, ∞)`` (Belinschi 2003, "The atoms of the free multiplicative convolution of
two probability distributions"), ``μ ⊠ ν({0}) = max(μ({0}), ν({0}))`` and, for ``a > 0``,
``μ ⊠ ν({a}) = μ({u}) + ν({v}) − 1`` when ``uv = a`` and that is ``> 0`` (one pair at
most per ``a``). A point mass ``δ_v`` only rescales, so ``δ_v ⊠ D²`` of a relu branch with
orthogonal weights is the two atoms ``{0, v}``. The Lorentzian ``m η / π((x − a)² + η²)``
that an atom leaves in ``-Im G(x + iη)/π`` is subtracted, so that ``Σ masses + ∫ ρ = 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mhckit.theory.laws import ClosedFormLaw, DiscreteLaw, PointMass, SpectralLaw

__all__ = ["SpectralDensity", "spectral_density", "law_atoms"]


@dataclass(frozen=True)
class SpectralDensity:
    """Density ``ρ`` of the absolutely continuous part on the grid ``x``, and the atoms:
    ``atom`` is the mass at 0, ``atoms``/``masses`` every atom (0 included) with its mass."""

    x: np.ndarray
    density: np.ndarray
    atom: float
    atoms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    masses: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def moment(self, k: int) -> float:
        """``∫ x^k ρ(x) dx`` on the grid (trapezoid) plus ``Σ masses · atoms^k``."""
        return float(np.trapezoid(self.x ** k * self.density, self.x)
                     + self.masses @ self.atoms ** k)

    def log_moment(self, k: int) -> float:
        """``∫ (log x)^k ρ(x) dx`` on the grid plus the atoms at ``a > 0`` (the atom at 0 is
        left out). Use a geometric grid that covers the support (``density ≈ 0`` at both
        ends)."""
        positive = self.atoms > 0
        return float(np.trapezoid(np.log(self.x) ** k * self.density, self.x)
                     + self.masses[positive] @ np.log(self.atoms[positive]) ** k)


def _factor_atoms(law: SpectralLaw) -> dict[float, float]:
    if isinstance(law, PointMass):
        return {law.value: 1.0}
    if isinstance(law, DiscreteLaw):
        out: dict[float, float] = {}
        for a, p in zip(law.atoms, law.weights, strict=True):
            out[float(a)] = out.get(float(a), 0.0) + float(p)
        return out
    return {0.0: law.atom} if law.atom > 0 else {}


def law_atoms(law: SpectralLaw) -> tuple[np.ndarray, np.ndarray]:
    """``(locations, masses)`` of the atoms of ``law`` (a free product is folded factor by
    factor with Belinschi's rule, module docstring), ascending, masses ``> 1e-15``."""
    if not isinstance(law, SpectralLaw):
        raise TypeError(f"law must be a SpectralLaw, got {type(law).__name__}")
    current = {1.0: 1.0}  # δ_1, the unit of ⊠
    for base, power in law.factors():
        atoms = _factor_atoms(base)
        for _ in range(power):
            nxt = {0.0: max(current.get(0.0, 0.0), atoms.get(0.0, 0.0))}
            for u, pu in current.items():
                for v, pv in atoms.items():
                    if u > 0 and v > 0 and pu + pv > 1:
                        nxt[u * v] = nxt.get(u * v, 0.0) + pu + pv - 1
            current = {a: p for a, p in nxt.items() if p > 1e-15}
    locations = np.array(sorted(current), dtype=np.float64)
    return locations, np.array([current[a] for a in locations])


def _residual_and_jacobian(factors, z, u):
    """``F(u)`` and ``∂F/∂u`` of the joint system, unknowns ``u = [w, χ_1, ..., χ_k]``."""
    w = u[:, 0]
    prod = z * w
    dlog_w = 1.0 / w
    size = u.shape[1]
    jac = np.zeros((u.shape[0], size, size), dtype=np.complex128)
    res = np.zeros_like(u)
    aux = 0
    for law, power in factors:
        if isinstance(law, DiscreteLaw):
            aux += 1
            chi = u[:, aux]
            prod = prod * (chi * (1 + w) / w) ** power
            dlog_w = dlog_w + power * (1 / (1 + w) - 1 / w)
            res[:, aux] = law.psi(chi) - w
            jac[:, aux, 0] = -1.0
            jac[:, aux, aux] = law.psi_derivative(chi)
        else:
            prod = prod * law.s_transform(w) ** power
            dlog_w = dlog_w + power * law.s_log_derivative(w)
    res[:, 0] = prod - (1 + w)
    jac[:, 0, 0] = prod * dlog_w - 1
    aux = 0
    for law, power in factors:
        if isinstance(law, DiscreteLaw):
            aux += 1
            jac[:, 0, aux] = prod * power / u[:, aux]
    return res, jac


def _newton(factors, z, u, *, tol: float, max_iter: int):
    res, jac = _residual_and_jacobian(factors, z, u)
    norm = np.abs(res).max(1)
    for _ in range(max_iter):
        active = norm > tol * (1 + np.abs(u).max(1))
        if not active.any():
            break
        step = np.linalg.solve(jac[active], -res[active][..., None])[..., 0]
        scale = np.ones(step.shape[0])
        best_u, best_norm = u[active], norm[active]
        best_res, best_jac = res[active], jac[active]
        pending = np.ones(step.shape[0], dtype=bool)
        for _ in range(30):  # damping: halve the step until the residual decreases
            trial = best_u[pending] + scale[pending, None] * step[pending]
            t_res, t_jac = _residual_and_jacobian(factors, z[active][pending], trial)
            t_norm = np.abs(t_res).max(1)
            ok = np.isfinite(t_norm) & (t_norm < best_norm[pending])
            idx = np.flatnonzero(pending)[ok]
            best_u[idx], best_norm[idx] = trial[ok], t_norm[ok]
            best_res[idx], best_jac[idx] = t_res[ok], t_jac[ok]
            pending[idx] = False
            scale[pending] *= 0.5
            if not pending.any():
                break
        u[active], norm[active], res[active], jac[active] = best_u, best_norm, best_res, best_jac
    return u, norm


def spectral_density(law: SpectralLaw, x: np.ndarray, *, eta: float = 1e-9,
                     steps: int = 80, tol: float = 1e-11, max_iter: int = 60
                     ) -> SpectralDensity:
    """Density of ``law`` on the grid ``x > 0`` by solving ``z w S(w) = 1 + w``.

    ``law`` is a closed-form law, a :class:`~mhckit.theory.laws.DiscreteLaw` or a free
    product of them. Atoms are returned with their masses (:func:`law_atoms`); a law that
    is all atoms (a point mass, the relu branch with orthogonal weights) has ``ρ = 0``.
    ``eta`` is the final imaginary part relative to ``x`` (``η = eta·x``, so the density
    is resolved near 0 too); ``steps`` continuation steps go geometrically from
    ``η_0 = 4 (1 + max x + m_1)`` down to it. Raises ``RuntimeError`` if Newton does not
    converge (never returns NaN).
    """
    if not isinstance(law, SpectralLaw):
        raise TypeError(f"law must be a SpectralLaw, got {type(law).__name__}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or np.any(x <= 0) or not np.all(np.isfinite(x)):
        raise ValueError("x must be a non-empty 1-D array of finite values > 0")
    factors = law.factors()
    for base, _ in factors:
        if not isinstance(base, ClosedFormLaw | DiscreteLaw):
            raise TypeError(f"cannot solve for factor {type(base).__name__}: it needs a "
                            "closed-form S-transform or to be a DiscreteLaw")
    locations, masses = law_atoms(law)
    if masses.sum() >= 1 - 1e-12:  # purely atomic: no continuous part to solve for
        return SpectralDensity(x=x, density=np.zeros_like(x), atom=float(
            masses[locations == 0].sum()), atoms=locations, masses=masses)
    m1 = float(law.moments(1)[0])
    top = 1.0 + float(x.max())
    if not (isinstance(eta, int | float) and 0 < eta < 1):
        raise ValueError(f"eta must be a number in (0, 1), got {eta!r}")
    etas = np.geomspace(np.full_like(x, 4.0 * (top + m1)), eta * x, steps)  # (steps, P)
    z = x + 1j * etas[0]
    w0 = m1 / z
    columns = [w0] + [w0 / float(base.moments(1)[0])
                      for base, _ in factors if isinstance(base, DiscreteLaw)]
    u = np.stack(columns, axis=1).astype(np.complex128)
    for value in etas:
        z = x + 1j * value
        u, norm = _newton(factors, z, u, tol=tol, max_iter=max_iter)
    bad = norm > 1e-6 * (1 + np.abs(u).max(1))
    if bad.any():
        raise RuntimeError(f"spectral_density: Newton did not converge at x = {x[bad][:5]} "
                           f"(residual {norm[bad].max():.2e}); try more steps or a larger eta")
    density = -np.imag((1 + u[:, 0]) / z) / np.pi
    width = eta * x
    for a, mass in zip(locations, masses, strict=True):  # the atoms' Lorentzians
        density -= mass * width / (np.pi * ((x - a) ** 2 + width ** 2))
    return SpectralDensity(x=x, density=np.clip(density, 0.0, None), atom=law.atom,
                           atoms=locations, masses=masses)
