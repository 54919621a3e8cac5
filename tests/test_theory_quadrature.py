"""Gaussian expectations of mean-field theory: closed forms, adaptive quadrature, mpmath.

References are independent of mhckit: closed forms derived in ``docs/theory.md`` and
30-digit-free, 20-digit ``mpmath.quad`` (tanh-sinh, split where the integrand has structure).
"""

from functools import cache

import mpmath as mp
import numpy as np
import pytest
from scipy import special

from mhckit.theory import (
    AccuracyError,
    chi,
    derivative_law,
    derivative_moment,
    fixed_point_q,
    gaussian_expectation,
    variance_map,
)
from mhckit.theory.activations import get_activation

QS = [0.01, 1.0, 10.0, 100.0, 1e4]
RTOL = 1e-10

MP_FUNCTIONS = {  # φ and φ' in mpmath, written from their definitions
    "tanh": (mp.tanh, lambda h: mp.sech(h) ** 2),
    "gelu": (lambda h: h * mp.ncdf(h), lambda h: mp.ncdf(h) + h * mp.npdf(h)),
    "erf": (mp.erf, lambda h: 2 / mp.sqrt(mp.pi) * mp.exp(-h * h)),
    "hard_tanh": (lambda h: max(-1, min(1, h)), lambda h: 1 if abs(h) < 1 else 0),
}


@cache
def mp_expectation(name: str, power: int, derivative: bool, q: float) -> float:
    """``E[g(h)^power]``, ``g = φ'`` or ``φ``, ``h ~ N(0, q)``, by 20-digit mpmath."""
    with mp.workdps(20):
        g = MP_FUNCTIONS[name][1 if derivative else 0]
        var, root = mp.mpf(q), mp.sqrt(q)
        points = {mp.mpf(0), mp.mpf(1), mp.mpf(-1)}
        points |= {s * mp.mpf(2) ** k for k in range(-4, 7, 2) for s in (1, -1)}
        points |= {c * root for c in (2, 6, -2, -6)}
        value = mp.quad(lambda h: g(h) ** power * mp.exp(-h * h / (2 * var))
                        / mp.sqrt(2 * mp.pi * var), [-mp.inf, *sorted(points), mp.inf])
        return float(value)


# -- closed forms ---------------------------------------------------------------------------
@pytest.mark.parametrize("q", QS)
@pytest.mark.parametrize("name", ["linear", "relu", "hard_tanh", "erf"])
def test_closed_forms_agree_with_adaptive_quadrature(name, q):
    act = get_activation(name)
    quad_square = gaussian_expectation(lambda h: act.function(h) ** 2, q, kinks=act.kinks)
    assert variance_map(name, q) == pytest.approx(quad_square, rel=RTOL)
    for k in (1, 2):
        quad_moment = gaussian_expectation(lambda h, k=k: act.derivative(h) ** (2 * k), q,
                                           kinks=act.kinks)
        assert derivative_moment(name, q, k) == pytest.approx(quad_moment, rel=RTOL)
        assert derivative_law(name, q).moments(k)[-1] == pytest.approx(quad_moment, rel=RTOL)


@pytest.mark.parametrize("q", QS)
def test_erf_and_hard_tanh_closed_forms_match_mpmath(q):
    assert variance_map("erf", q) == pytest.approx(mp_expectation("erf", 2, False, q),
                                                   rel=RTOL)
    # E erf'(h)² = (4/π)/√(1 + 4q): the χ of an erf network
    assert chi("erf", q, 2.0) == pytest.approx(4 * 4 / np.pi / np.sqrt(1 + 4 * q), rel=1e-13)
    assert chi("erf", q) == pytest.approx(mp_expectation("erf", 2, True, q), rel=RTOL)
    assert variance_map("hard_tanh", q) == pytest.approx(
        mp_expectation("hard_tanh", 2, False, q), rel=RTOL)
    assert chi("hard_tanh", q) == pytest.approx(special.erf(1 / np.sqrt(2 * q)), rel=1e-14)


# -- smooth activations against mpmath --------------------------------------------------------
def _check_against_mpmath(name, q, sigma_w, sigma_b=0.0):
    assert variance_map(name, q, sigma_w, sigma_b) == pytest.approx(
        sigma_w ** 2 * mp_expectation(name, 2, False, q) + sigma_b ** 2, rel=RTOL)
    assert chi(name, q, sigma_w) == pytest.approx(
        sigma_w ** 2 * mp_expectation(name, 2, True, q), rel=RTOL)
    d2, d4 = derivative_law(name, q).moments(2)
    assert d2 == pytest.approx(mp_expectation(name, 2, True, q), rel=RTOL)
    assert d4 == pytest.approx(mp_expectation(name, 4, True, q), rel=RTOL)


@pytest.mark.parametrize("sigma_w", [1.0, 4.0, 8.0])
def test_tanh_mean_field_at_its_fixed_point_matches_mpmath(sigma_w):
    q = fixed_point_q("tanh", sigma_w, 0.3)
    # q* is a fixed point of the high-precision map, not only of ours
    assert sigma_w ** 2 * mp_expectation("tanh", 2, False, q) + 0.09 == pytest.approx(
        q, rel=1e-9)
    _check_against_mpmath("tanh", q, sigma_w, 0.3)


@pytest.mark.parametrize("sigma_w", [1.0, 4.0, 8.0])
def test_gelu_expectations_at_q_sigma_w_squared_match_mpmath(sigma_w):
    _check_against_mpmath("gelu", sigma_w ** 2, sigma_w)


@pytest.mark.parametrize("name", ["tanh", "gelu"])
@pytest.mark.parametrize("q", [0.01, 1e4])
def test_smooth_activations_at_the_ends_of_the_range_match_mpmath(name, q):
    _check_against_mpmath(name, q, 1.0)


@pytest.mark.parametrize("quantity, value, reference", [
    # the values that were wrong (Gauss–Hermite of order 64/101), against mpmath
    ("erf chi, q = 10", lambda: chi("erf", 10.0), lambda: 4 / (np.pi * np.sqrt(41))),
    ("erf chi, q = 30", lambda: chi("erf", 30.0), lambda: 4 / (np.pi * np.sqrt(121))),
    ("tanh chi, q = 20", lambda: chi("tanh", 20.0),
     lambda: mp_expectation("tanh", 2, True, 20.0)),
    ("hard_tanh variance map, q = 4", lambda: variance_map("hard_tanh", 4.0),
     lambda: mp_expectation("hard_tanh", 2, False, 4.0)),
])
def test_values_that_gauss_hermite_got_wrong(quantity, value, reference):
    assert value() == pytest.approx(reference(), rel=RTOL), quantity


def test_tanh_with_sigma_w_8_is_chaotic():
    """χ(q*) = 4.48 > 1 at σ_w = 8 (Gauss–Hermite said 0.748, "ordered")."""
    q = fixed_point_q("tanh", 8.0)
    assert chi("tanh", q, 8.0) == pytest.approx(
        64 * mp_expectation("tanh", 2, True, q), rel=RTOL)
    assert chi("tanh", q, 8.0) > 4


def test_derivative_law_of_tanh_at_huge_variance():
    """``E sech⁴ h ≈ (4/3)/√(2πq)`` as ``q → ∞``; almost all the mass is at ``d² ≈ 0``."""
    q = 1e6
    law = derivative_law("tanh", q)
    assert law.moments(1)[0] == pytest.approx(mp_expectation("tanh", 2, True, q), rel=RTOL)
    assert law.moments(1)[0] == pytest.approx(4 / 3 / np.sqrt(2 * np.pi * q), rel=1e-5)
    # d² < 1e-6 ⇔ |h| > 3.8 ⇔ |z| > 0.0038: mass 0.997
    assert law.weights[law.atoms < 1e-6].sum() > 0.99


# -- it says so where it cannot ---------------------------------------------------------------
def test_quadrature_raises_instead_of_returning_an_inaccurate_value():
    with pytest.raises(AccuracyError, match="rtol"):  # E tanh h = 0: no relative accuracy
        gaussian_expectation(np.tanh, 1.0)
    assert abs(gaussian_expectation(np.tanh, 1.0, atol=1e-12)) <= 1e-12
    with pytest.raises(AccuracyError):  # 10⁴ unresolved jumps
        gaussian_expectation(lambda h: np.sign(np.sin(1e4 * h)) + 2, 1.0)


def test_fixed_point_raises_where_there_is_none():
    with pytest.raises(ValueError, match="no fixed point"):  # q halves every layer
        fixed_point_q("relu", 1.0)
    with pytest.raises(ValueError, match="no fixed point"):  # q* = 0 (ordered, no bias)
        fixed_point_q("tanh", 0.5)
    assert fixed_point_q("relu", np.sqrt(2.0), q0=3.0) == pytest.approx(3.0, rel=1e-12)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="q must"):
        chi("tanh", -1.0)
    with pytest.raises(ValueError, match="sigma_w"):
        variance_map("tanh", 1.0, float("nan"))
    with pytest.raises(ValueError, match="k must"):
        derivative_moment("tanh", 1.0, 0)
