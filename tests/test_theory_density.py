"""Spectral density from the S-transform: Newton with shrinking-η continuation."""

import numpy as np
import pytest

from mhckit.theory import (
    Branch,
    DiscreteLaw,
    FreeMultiplicativeBM,
    FussCatalan,
    MarchenkoPastur,
    PointMass,
    derivative_law,
    free_product,
    spectral_density,
)


@pytest.mark.parametrize("depth", [1, 2, 3, 6])
def test_density_solver_matches_fuss_catalan_parametric_density(depth):
    law = FussCatalan(depth)
    phi = np.linspace(0.02, np.pi / (depth + 1) - 0.02, 40)
    x, rho = law.parametric_density(phi)
    solved = spectral_density(law, x)
    np.testing.assert_allclose(solved.density, rho, rtol=1e-5)


@pytest.mark.parametrize("depth", [2, 4])
def test_fuss_catalan_parametric_density_has_fuss_catalan_moments(depth):
    law = FussCatalan(depth)
    phi = np.linspace(1e-6, np.pi / (depth + 1) - 1e-6, 200_001)
    x, rho = law.parametric_density(phi)
    for k in (1, 2, 3):  # x decreases along φ: integrate with |dx|
        moment = -np.trapezoid(x ** k * rho, x)
        assert moment == pytest.approx(law.moments(k)[-1], rel=1e-4)


def test_marchenko_pastur_density_matches_the_closed_form_and_keeps_the_atom():
    ratio = 2.0
    law = MarchenkoPastur(ratio)
    lo, hi = (1 - np.sqrt(ratio)) ** 2, (1 + np.sqrt(ratio)) ** 2
    x = np.linspace(lo + 1e-3, hi - 1e-3, 300)
    exact = np.sqrt((hi - x) * (x - lo)) / (2 * np.pi * ratio * x)
    solved = spectral_density(law, x)
    np.testing.assert_allclose(solved.density, exact, rtol=1e-5, atol=1e-7)
    assert solved.atom == pytest.approx(1 - 1 / ratio)


@pytest.mark.parametrize("law", [
    FreeMultiplicativeBM(0.5),
    free_product((MarchenkoPastur(), 3), (derivative_law("relu", 1.0), 3)),
    free_product((DiscreteLaw([0.2, 0.7, 1.0], [0.3, 0.3, 0.4]), 2), MarchenkoPastur(0.5)),
    free_product((MarchenkoPastur(), 2), (derivative_law("tanh", 0.7), 2)),
], ids=["free-bm", "relu-net", "discrete-x-mp", "tanh-net"])
def test_density_integrates_to_one_and_reproduces_the_first_moments(law):
    # products of L free factors have ρ ~ x^{-L/(L+1)} at 0: resolve down to 1e-14
    x = np.concatenate([np.geomspace(1e-14, 1e-2, 800), np.linspace(1e-2, 12.0, 4000)[1:]])
    solved = spectral_density(law, x)
    assert solved.moment(0) == pytest.approx(1.0, abs=5e-3)
    m1, m2 = law.moments(2)
    assert solved.moment(1) == pytest.approx(m1, rel=2e-3)
    assert solved.moment(2) == pytest.approx(m2, rel=5e-3)


def test_free_bm_log_variance_from_the_density():
    """``Var log λ`` of free multiplicative BM, integrated from the solved density, equals
    ``2t + t²/3`` (observed identity, to the quadrature error; ``t²/3`` is the
    Haagerup–Möller large-``t`` term, ``2t`` the small-``t`` variance of ``λ``)."""
    for t in (0.25, 1.0):
        law = FreeMultiplicativeBM(t)
        x = np.geomspace(np.exp(-3 * t - 6), np.exp(3 * t + 6), 8_000)
        solved = spectral_density(law, x)
        mean = solved.log_moment(1)
        assert solved.moment(0) == pytest.approx(1.0, abs=1e-5)
        assert abs(mean) < 1e-4  # mean-log law: E log λ = 0
        assert solved.log_moment(2) - mean ** 2 == pytest.approx(2 * t + t * t / 3, rel=1e-4)


@pytest.mark.parametrize("law, atoms, masses", [
    (PointMass(2.0), [2.0], [1.0]),
    # relu branch with orthogonal weights: ε²σ_w² D², D² ∈ {0, 1} with mass ½ each
    (Branch(0.5, weights="orthogonal", derivative=derivative_law("relu", 1.0)).gram_law(),
     [0.0, 0.25], [0.5, 0.5]),
], ids=["point-mass", "orthogonal-relu-branch"])
def test_atomic_laws_return_their_atoms_with_masses(law, atoms, masses):
    solved = spectral_density(law, np.linspace(0.05, 3.0, 50))
    np.testing.assert_allclose(solved.atoms, atoms, rtol=1e-15)
    np.testing.assert_allclose(solved.masses, masses, rtol=1e-15)
    assert solved.moment(0) == pytest.approx(1.0, abs=1e-15)
    assert solved.moment(1) == pytest.approx(law.moments(1)[0], rel=1e-14)


def test_free_product_of_discrete_laws_keeps_belinschi_atoms():
    """``(0.9 δ_1 + 0.1 δ_2)^{⊠2}`` has an atom of mass ``0.9 + 0.9 − 1 = 0.8`` at ``1``
    (Belinschi 2003) and a continuous rest of mass ``0.2``; atoms + density integrate to 1
    and the mean is the product of the means, ``1.1²``."""
    law = free_product((DiscreteLaw([1.0, 2.0], [0.9, 0.1]), 2))
    solved = spectral_density(law, np.linspace(1e-3, 5.0, 600))
    np.testing.assert_allclose(solved.atoms, [1.0])
    np.testing.assert_allclose(solved.masses, [0.8])
    assert solved.moment(0) == pytest.approx(1.0, abs=1e-3)
    assert solved.moment(1) == pytest.approx(1.21, rel=1e-3)


def test_bad_grid_and_law_raise():
    with pytest.raises(ValueError, match="x must"):
        spectral_density(MarchenkoPastur(), np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="law"):
        spectral_density("mp", np.array([1.0]))
    with pytest.raises(ValueError, match="eta"):
        spectral_density(MarchenkoPastur(), np.array([1.0]), eta=-1.0)
