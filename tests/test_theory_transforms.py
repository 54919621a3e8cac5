"""S-transform algebra: Lagrange inversion, free products, the mean-log law (mhckit.theory)."""

from fractions import Fraction

import numpy as np
import pytest
import sympy
import torch
from hypothesis import given
from hypothesis import strategies as st

from mhckit.theory import (
    DiscreteLaw,
    FreeMultiplicativeBM,
    FussCatalan,
    MarchenkoPastur,
    free_product,
    free_product_moments,
    lyapunov_quantile,
    mean_log,
    moments_from_s,
    s_from_moments,
)
from mhckit.theory import monte_carlo as mc
from mhckit.theory.symbolic import (
    free_product_moments_exact,
    fuss_catalan_number,
    lagrange_moments,
    s_series_exact,
)

W = sympy.Symbol("w")


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_lagrange_moments_of_inverse_power_are_fuss_catalan_exactly(depth):
    exact = lagrange_moments((1 + W) ** (-depth), W, 6)
    assert exact == [fuss_catalan_number(depth, k) for k in range(1, 7)]


@pytest.mark.parametrize("depth", [1, 3])
def test_float_lagrange_inversion_matches_sympy(depth):
    numeric = FussCatalan(depth).moments(8)
    exact = [float(fuss_catalan_number(depth, k)) for k in range(1, 9)]
    np.testing.assert_allclose(numeric, exact, rtol=1e-12)


def test_free_bm_moments_from_lagrange_inversion():
    t = sympy.Symbol("t", positive=True)
    m1, m2 = lagrange_moments(sympy.exp(-t * (1 + 2 * W)), W, 2)
    assert sympy.simplify(m1 - sympy.exp(t)) == 0
    assert sympy.simplify(m2 - (1 + 2 * t) * sympy.exp(2 * t)) == 0
    np.testing.assert_allclose(FreeMultiplicativeBM(0.7).moments(2),
                               [np.exp(0.7), 2.4 * np.exp(1.4)], rtol=1e-12)


def test_catalan_moments_have_s_transform_one_over_one_plus_w():
    assert s_series_exact([1, 2, 5, 14]) == [1, -1, 1, -1]
    np.testing.assert_allclose(s_from_moments([1, 2, 5, 14, 42]), [1, -1, 1, -1, 1])


def test_product_of_free_marchenko_pastur_is_fuss_catalan_exactly():
    catalan = [1, 2, 5, 14, 42]
    assert free_product_moments_exact(catalan, catalan) == [
        fuss_catalan_number(2, k) for k in range(1, 6)]
    np.testing.assert_allclose(free_product_moments(catalan, catalan), [1, 3, 12, 55, 273])


laws = st.lists(st.tuples(st.floats(0.05, 3.0), st.floats(0.1, 1.0)), min_size=1, max_size=4)


def _discrete(pairs):
    atoms, weights = zip(*pairs, strict=True)
    return DiscreteLaw(atoms, np.array(weights) / sum(weights))


@given(laws)
def test_moments_to_s_transform_and_back_is_the_identity(pairs):
    moments = _discrete(pairs).moments(7)
    np.testing.assert_allclose(moments_from_s(s_from_moments(moments)), moments, rtol=1e-8)


@given(st.lists(st.tuples(st.integers(1, 5), st.integers(1, 4)), min_size=1, max_size=3),
       st.lists(st.tuples(st.integers(1, 5), st.integers(1, 4)), min_size=1, max_size=3))
def test_free_product_moments_match_the_exact_rational_computation(a, b):
    def rational_moments(pairs):
        total = sum(w for _, w in pairs)
        return [sum(sympy.Rational(w, total) * sympy.Integer(x) ** k for x, w in pairs)
                for k in range(1, 6)]

    ma, mb = rational_moments(a), rational_moments(b)
    exact = [float(v) for v in free_product_moments_exact(ma, mb)]
    np.testing.assert_allclose(free_product_moments([float(v) for v in ma],
                                                    [float(v) for v in mb]), exact, rtol=1e-9)


@pytest.mark.parametrize("law, expected", [
    (MarchenkoPastur(), -1.0),                    # E log λ of square Wishart
    (FussCatalan(3), -3.0),                       # additivity over 3 free factors
    (FreeMultiplicativeBM(1.3), 0.0),
    (MarchenkoPastur(1.0, variance=2.0), np.log(2.0) - 1.0),
])
def test_mean_log_law_closed_forms(law, expected):
    assert law.mean_log() == pytest.approx(expected, abs=1e-9)


@given(laws)
def test_mean_log_law_of_a_discrete_law_is_the_average_log_atom(pairs):
    law = _discrete(pairs)
    assert law.mean_log() == pytest.approx(float(law.weights @ np.log(law.atoms)), abs=1e-8)


def test_mean_log_is_additive_over_free_factors():
    a, b = _discrete([(0.3, 1), (2.0, 1)]), _discrete([(0.5, 2), (1.5, 1), (3.0, 1)])
    assert free_product(a, b).mean_log() == pytest.approx(a.mean_log() + b.mean_log(),
                                                          abs=1e-8)


@pytest.mark.parametrize("size", [40, 160])
def test_mean_log_law_matches_the_exact_wishart_log_determinant(size):
    """Finite-size truth: ``E log det(XXᵀ/M) = Σ_{i≤N} [ψ((M-i+1)/2) + log 2] - N log M``
    for ``X`` ``N × M`` Gaussian (Goodman 1963); per eigenvalue it tends to the mean-log law
    of Marchenko–Pastur with ``c = N/M``, with an ``O(1/N)`` error."""
    from scipy.special import digamma

    ratio = 0.5
    cols = int(size / ratio)
    i = np.arange(1, size + 1)
    exact = float(np.mean(digamma((cols - i + 1) / 2) + np.log(2.0)) - np.log(cols))
    predicted = MarchenkoPastur(ratio).mean_log()
    assert abs(exact - predicted) < 1.0 / size


def test_lyapunov_quantile_of_free_bm_is_uniform_on_minus_t_half_t_half():
    u = np.linspace(0.05, 1.0, 7)
    np.testing.assert_allclose(lyapunov_quantile(FreeMultiplicativeBM(2.0).s_transform, u),
                               2.0 * (u - 0.5), atol=1e-12)


@pytest.mark.parametrize("size", [16, 48])
def test_lyapunov_exponents_of_ginibre_products_follow_half_log_u(size):
    """Newman (1986): exponent ``i`` of ``N × N`` Ginibre products is
    ``½(log(2/N) + ψ((N-i+1)/2))``; the large-``N`` law is ``½ log u`` (Haagerup–Möller)."""
    g = torch.Generator().manual_seed(size)
    factors = mc.gaussian_matrices(2, 300, size=size, generator=g)
    exponents = mc.lyapunov_exponents(factors).mean(0).numpy()
    i = np.arange(1, size + 1)
    quantiles = lyapunov_quantile(MarchenkoPastur().s_transform, (size - i + 0.5) / size)
    # quantile-midpoint discretisation error ~ 1/size, Monte Carlo error ~ 1/sqrt(300·size)
    assert np.abs(exponents - quantiles)[: size // 2].max() < 2.0 / size + 0.02
    from scipy.special import digamma
    newman = 0.5 * (np.log(2.0 / size) + digamma((size - i + 1) / 2))
    # the smallest exponents fluctuate most (log χ²_1 steps): compare the top half
    assert np.abs(exponents - newman)[: size // 2].max() < 0.03


def test_lyapunov_quantile_keeps_the_atom_at_zero_of_a_wide_wishart():
    """Marchenko–Pastur with ratio 2 has mass ½ at 0: half the exponents are ``-∞``;
    above, ``γ(u) = ½ log(1 + c(u − 1))`` (``S = 1/(1 + cw)``)."""
    u = np.array([0.1, 0.3, 0.5, 0.6, 0.8, 1.0])
    gamma = lyapunov_quantile(MarchenkoPastur(2.0), u)
    assert np.all(gamma[:3] == -np.inf)
    np.testing.assert_allclose(gamma[3:], 0.5 * np.log(1 + 2.0 * (u[3:] - 1)), rtol=1e-14)
    with pytest.raises(ValueError, match="atom"):  # the bare S-transform needs the atom
        lyapunov_quantile(MarchenkoPastur(2.0).s_transform, u)
    np.testing.assert_array_equal(
        lyapunov_quantile(MarchenkoPastur(2.0).s_transform, u, atom=0.5), gamma)


@pytest.mark.parametrize("kind", [int, sympy.Integer, Fraction])
def test_s_from_rational_moments_is_exact_at_high_order(kind):
    """Fuss–Catalan ``L = 3``: ``S = (1 + w)^{-3}``, ``s_j = (−1)^j C(j + 2, 2)``, recovered
    exactly from the integer moments up to order 30 (floats lost it past order 18)."""
    moments = [kind(int(fuss_catalan_number(3, k))) for k in range(1, 31)]
    expected = [(-1) ** j * (j + 1) * (j + 2) // 2 for j in range(30)]
    assert s_from_moments(moments).tolist() == expected


def test_s_from_float_moments_refuses_orders_it_cannot_compute():
    floats = [float(fuss_catalan_number(3, k)) for k in range(1, 23)]
    np.testing.assert_allclose(s_from_moments(floats[:8]),
                               [(-1) ** j * (j + 1) * (j + 2) / 2 for j in range(8)],
                               rtol=1e-10)
    with pytest.raises(ValueError, match="exact moments"):
        s_from_moments(floats)


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="moments"):
        s_from_moments([0.0, 1.0])
    with pytest.raises(ValueError, match="order"):
        moments_from_s([1.0, -1.0], order=3)
    with pytest.raises(ValueError, match="finite"):
        moments_from_s([1.0, float("nan")])
    with pytest.raises(ValueError, match="s_transform"):
        mean_log(lambda u: -np.ones_like(u))
