"""Plain deep networks (Pennington et al. 2017/2018) and ResNets (Tarnowski et al. 2019)."""

import numpy as np
import pytest
import torch

from mhckit.theory import (
    Branch,
    chi,
    deep_network_law,
    deep_network_moments,
    derivative_law,
    fixed_point_q,
    gaussian_expectation,
    hyperconnection_moments,
    resnet_limit_law,
    resnet_moments,
    variance_map,
)
from mhckit.theory import monte_carlo as mc


def test_fixed_point_solves_the_variance_map():
    q = fixed_point_q("tanh", sigma_w=1.5, sigma_b=0.3)
    assert variance_map("tanh", q, 1.5, 0.3) == pytest.approx(q, rel=1e-10)


def test_erf_chi_closed_form_and_quadrature_of_a_polynomial():
    # E[φ'(h)²] for φ = erf: (4/π) E[e^{-2h²}] = (4/π) / sqrt(1 + 4q)
    q = 0.8
    assert chi("erf", q) == pytest.approx(4 / np.pi / np.sqrt(1 + 4 * q), rel=1e-10)
    assert gaussian_expectation(lambda h: h ** 4, q) == pytest.approx(3 * q * q, rel=1e-12)


def test_piecewise_linear_derivative_laws_are_exact_two_atom_laws():
    assert derivative_law("relu", 3.0).moments(3) == pytest.approx([0.5, 0.5, 0.5])
    from scipy.special import erf
    p = erf(1 / np.sqrt(2 * 0.5))
    assert derivative_law("hard_tanh", 0.5).moments(1)[0] == pytest.approx(p)


@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_closed_form_moments_equal_lagrange_inversion_of_the_product_law(weights):
    layer = Branch(1.0, sigma_w=1.3, weights=weights, derivative=derivative_law("tanh", 0.6))
    m1, var = deep_network_moments(5, layer)
    lagrange = deep_network_law(5, layer).moments(2)
    assert m1.value == pytest.approx(lagrange[0], rel=1e-12)
    assert var.value == pytest.approx(lagrange[1] - lagrange[0] ** 2, rel=1e-10)
    assert (m1.kind, var.kind) == ("expectation", "limit")


def _deep_network_samples(layer, depth, size, batch, generator):
    weights = (mc.gaussian_matrices(batch, depth, size=size, generator=generator,
                                    variance=layer.sigma_w ** 2)
               if layer.weights == "gaussian" else
               layer.sigma_w * mc.haar_orthogonal(batch, depth, size=size, generator=generator))
    law = layer.derivative
    idx = torch.multinomial(torch.tensor(law.weights), batch * depth * size, True,
                            generator=generator)
    d = torch.tensor(law.atoms)[idx].sqrt().reshape(batch, depth, size)
    return mc.squared_singular_values(mc.deep_network_jacobian(weights, d))


@pytest.mark.parametrize("size", [24, 96, pytest.param(384, marks=pytest.mark.slow)])
@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_pennington_chi_power_law_and_variance_law(weights, size):
    """``m_1 = χ^L`` (exact in expectation: within Monte Carlo error) and
    ``Var λ / m_1² = L (E d⁴/E² d² − 1 + g)`` (large width: error ``O(L/size)``)."""
    g = torch.Generator().manual_seed(size)
    q = fixed_point_q("tanh", sigma_w=1.2, sigma_b=0.2)
    layer = Branch(1.0, sigma_w=1.2, weights=weights, derivative=derivative_law("tanh", q))
    depth = 4
    total = 12288
    lam = _deep_network_samples(layer, depth, size, total // size, g)
    m1, var = deep_network_moments(depth, layer)
    per_matrix = lam.mean(-1)
    stderr = float(per_matrix.std()) / per_matrix.numel() ** 0.5
    assert abs(float(per_matrix.mean()) - m1.value) < 4 * stderr + 1e-12
    measured = float((lam ** 2).mean() - lam.mean() ** 2)
    # finite-width bias ≈ +4/size (relative, measured over seeds), heavy-tailed Monte Carlo
    # spread of the variance estimate ≤ 0.04 at this sample size
    assert measured == pytest.approx(var.value, rel=6.0 / size + 0.06)


def test_orthogonal_weights_concentrate_the_spectrum_more_than_gaussian():
    q = fixed_point_q("tanh", sigma_w=1.1, sigma_b=0.05)
    d = derivative_law("tanh", q)
    gauss = deep_network_moments(8, Branch(1.0, 1.1, "gaussian", d))[1].value
    ortho = deep_network_moments(8, Branch(1.0, 1.1, "orthogonal", d))[1].value
    assert ortho < gauss


def test_resnet_moments_closed_form():
    branch = Branch(0.3, sigma_w=1.1, derivative=derivative_law("relu", 1.0))
    depth, b1, b2 = 7, branch.beta1, branch.beta2
    m1, m2 = resnet_moments(depth, branch)
    assert m1.value == pytest.approx((1 + b1) ** depth, rel=1e-12)
    expected = (1 + b1) ** (2 * depth) + depth * (2 * b1 + b2 - b1 ** 2) * (1 + b1) ** (
        2 * depth - 2)
    assert m2.value == pytest.approx(expected, rel=1e-12)


def _resnet_eigenvalues(branch, depth, width, batch, generator):
    ones = torch.ones(depth, 1, dtype=torch.float64)
    b = mc.branch_jacobians(branch, batch, depth, width=width, generator=generator)
    jac = mc.hyperconnection_jacobian(ones[..., None], ones, ones, b)
    return mc.squared_singular_values(jac)


@pytest.mark.parametrize("width", [24, 96, pytest.param(384, marks=pytest.mark.slow)])
@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_resnet_block_moments_against_monte_carlo(weights, width):
    """``m_1 = (1 + ε² q)^L`` in expectation, ``m_2`` to ``O(1/width)``."""
    g = torch.Generator().manual_seed(width)
    branch = Branch(0.4, weights=weights, derivative=derivative_law("relu", 1.0))
    depth = 6
    lam = _resnet_eigenvalues(branch, depth, width, 3072 // width, g)
    m1, m2 = resnet_moments(depth, branch)
    per_matrix = lam.mean(-1)
    stderr = float(per_matrix.std()) / per_matrix.numel() ** 0.5
    assert abs(float(per_matrix.mean()) - m1.value) < 4 * stderr
    assert float((lam ** 2).mean()) == pytest.approx(m2.value, rel=4.0 / width + 0.01)


@pytest.mark.parametrize("width", [48, 144, pytest.param(432, marks=pytest.mark.slow)])
def test_resnet_log_spectrum_tends_to_free_multiplicative_bm(width):
    """Deep ResNet, ``t = L β_1 = 1``: ``E log λ → 0`` (mean-log law of ``e^{-t(1+2w)}``)
    and ``Var log λ → 2t + t²/3`` (free-BM log-variance), errors ``O(1/width + 1/L)``."""
    g = torch.Generator().manual_seed(width)
    depth, t = 64, 1.0
    branch = Branch(float(np.sqrt(t / depth)))
    assert resnet_limit_law(depth, branch).t == pytest.approx(t)
    logs = torch.log(_resnet_eigenvalues(branch, depth, width, max(1, 288 // width), g))
    # per matrix, (1/C) log det JJᵀ fluctuates by ~ sqrt(2t)/C
    assert abs(float(logs.mean())) < 5.0 / width
    assert float(logs.var()) == pytest.approx(2 * t + t * t / 3, abs=4.0 / width + 0.05)


def test_resnet_moments_of_huge_gain_are_exact_or_refused():
    """``Branch(3)``: ``β_1 = 9``, ``β_2 = 162``; at ``L = 100`` ``m_1 = 10^100``,
    ``m_2 = 10^200 + 100·99·10^198 = 10^202`` (the recursion used to overflow to NaN);
    at ``L = 200`` ``m_2 = 10^402`` is beyond float64 and says so."""
    m1, m2 = resnet_moments(100, Branch(3.0))
    assert m1.value == pytest.approx(1e100, rel=1e-13)
    assert m2.value == pytest.approx(1e202, rel=1e-13)
    with pytest.raises(OverflowError, match="m2 = 10\\^402"):
        resnet_moments(200, Branch(3.0))


def test_one_stream_hyperconnection_is_the_resnet():
    branch = Branch(0.5)
    m = hyperconnection_moments(np.ones((3, 1, 1)), [1.0], [1.0], branch)
    r1, r2 = resnet_moments(3, branch)
    assert (m.m1.value, m.m2.value) == (r1.value, r2.value)


def _tanh_network_first_moment(sigma_w, q, depth, width, batch, generator):
    """Per-network ``tr(JJᵀ)/N`` of a real forward pass ``h^l = σ_w W_l tanh(h^{l-1})``
    with Haar-orthogonal ``W_l`` and ``h^0 ~ N(0, q)``: ``J = ∂h^L/∂h^0``."""
    h = q ** 0.5 * torch.randn(batch, width, 1, generator=generator, dtype=torch.float64)
    jac = torch.eye(width, dtype=torch.float64).expand(batch, width, width)
    weights = sigma_w * mc.haar_orthogonal(batch, depth, size=width, generator=generator)
    for layer in range(depth):
        jac = weights[:, layer] @ ((1 - torch.tanh(h) ** 2) * jac)
        h = weights[:, layer] @ torch.tanh(h)
    return (jac ** 2).sum((-2, -1)) / width


@pytest.mark.parametrize("width, batch", [(32, 160), (128, 24)])
def test_chaotic_tanh_network_first_moment_against_a_real_forward_pass(width, batch):
    """PSG ``m_1 = χ^L`` deep in the chaotic regime (tanh, σ_w = 4, orthogonal, L = 6):
    ``χ(q*) = 2.377``, ``m_1 = 180.3`` (Gauss–Hermite gave 70.7). The forward pass keeps
    ``h^l`` at variance ``q*`` to ``O(1/√N)``; tolerance 4 standard errors + ``3/N``."""
    g = torch.Generator().manual_seed(width)
    q = fixed_point_q("tanh", 4.0)
    layer = Branch(1.0, 4.0, "orthogonal", derivative_law("tanh", q))
    m1 = deep_network_moments(6, layer)[0].value
    assert m1 == pytest.approx(chi("tanh", q, 4.0) ** 6, rel=1e-12)
    per_network = _tanh_network_first_moment(4.0, q, 6, width, batch, g)
    stderr = float(per_network.std()) / batch ** 0.5
    assert abs(float(per_network.mean()) - m1) < 4 * stderr + 3.0 / width * m1


def _relu_resnet_second_moment(epsilon, depth, width, batch, generator, *, free):
    """Per-network ``tr((JJᵀ)²)/C`` of ``x_l = x_{l-1} + ε W_l relu(x_{l-1})``: the real
    forward pass (``D_l = diag(x_{l-1} > 0)``), or with ``D_l`` drawn freely (fair coins)."""
    x = torch.randn(batch, width, 1, generator=generator, dtype=torch.float64)
    jac = torch.eye(width, dtype=torch.float64).expand(batch, width, width)
    weights = mc.gaussian_matrices(batch, depth, size=width, generator=generator)
    for layer in range(depth):
        if free:
            d = (torch.rand(batch, width, 1, generator=generator, dtype=torch.float64) < 0.5)
        else:
            d = x > 0
        jac = jac + epsilon * weights[:, layer] @ (d.double() * jac)
        x = x + epsilon * weights[:, layer] @ torch.relu(x)
    lam = mc.squared_singular_values(jac)
    return (lam ** 2).mean(-1)


@pytest.mark.parametrize("width, batch", [(32, 96), (128, 16)])
def test_cli_default_resnet_m2_is_the_free_d_model_and_real_stacks_exceed_it(width, batch):
    """``mhckit spectrum``'s defaults (relu, ``L = 32``, ``ε = 0.25``): its bulk ``R`` is the
    one-stream ResNet at the stream mean. With ``D_l`` drawn freely the Monte Carlo ``m_2``
    tends to the prediction (``O(1/C)``); the real forward pass, whose ``D_l`` is correlated
    with the product below it, measures ``m_2`` about ``DEFAULT_M2_BIAS = 22%`` higher from
    every width: a bias of the model, stated on the CLI's output and plot, not noise."""
    from mhckit.cli.spectrum import DEFAULT_M2_BIAS

    g = torch.Generator().manual_seed(width)
    branch = Branch(0.25, derivative=derivative_law("relu", 1.0))
    predicted = resnet_moments(32, branch)[1].value
    assert predicted == pytest.approx(21.065, abs=1e-3)
    free = _relu_resnet_second_moment(0.25, 32, width, batch, g, free=True)
    assert float(free.mean()) == pytest.approx(predicted, rel=3.0 / width + 0.04)
    real = _relu_resnet_second_moment(0.25, 32, width, batch, g, free=False)
    stderr = float(real.std()) / batch ** 0.5 / predicted
    bias = float(real.mean()) / predicted - 1
    assert abs(bias - DEFAULT_M2_BIAS) < 4 * stderr + 0.05
    assert bias > 0.1
