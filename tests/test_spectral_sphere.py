"""SpectralSphere: unit marginals and unit spectral norm, exactly (sHC, arXiv 2603.20896)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mhckit.functional import helmert_basis
from mhckit.manifolds import SpectralSphere
from mhckit.manifolds.base import default_atol
from mhckit.manifolds.spectral_sphere import _RotatedSpectrum, _skew_pattern

DTYPES = [torch.float32, torch.float64]


def logits(n):
    """Hypothesis arrays of sHC parameters, batch of 3, entries up to ±1e4."""
    return arrays(np.float64, (3, (n - 1) ** 2),
                  elements=st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [2, 4, 6])
@given(data=st.data())
def test_parametrize_has_unit_marginals_and_unit_spectral_norm(n, dtype, data):
    z = torch.as_tensor(data.draw(logits(n)), dtype=dtype)
    h = SpectralSphere(n).parametrize(z)
    tol = default_atol(dtype)
    assert h.dtype == dtype and h.shape == (3, n, n)
    assert (h.sum(-1) - 1).abs().max() <= tol
    assert (h.sum(-2) - 1).abs().max() <= tol
    assert (torch.linalg.matrix_norm(h.double(), ord=2) - 1).abs().max() <= tol


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_extreme_logits_stay_exact(scale):
    m = SpectralSphere(5)
    for dtype in DTYPES:
        z = scale * torch.randn(200, *m.param_shape, dtype=dtype)
        assert m.constraint_error(m.parametrize(z)).max() <= default_atol(dtype)


def test_negative_entries_occur():
    h = SpectralSphere(4).parametrize(torch.randn(100, 9, dtype=torch.float64))
    assert (h < -0.1).any(dim=(-2, -1)).float().mean() > 0.5


def test_spectral_norm_equals_max_of_one_and_sigma():
    m = SpectralSphere(4)
    z = torch.zeros(9, dtype=torch.float64)
    z[6:] = torch.tensor([0.3, -0.5, 0.1])  # σ = tanh(c), U = V = I
    svals = torch.linalg.svdvals(m.parametrize(z))
    expected = torch.tensor([1.0, *torch.tanh(z[6:]).abs().tolist()], dtype=torch.float64)
    torch.testing.assert_close(svals, expected.sort(descending=True).values)


def test_parametrize_gradcheck_float64():
    z = torch.randn(2, 16, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SpectralSphere(5).parametrize, (z,))


@pytest.mark.parametrize("n", [2, 4, 5])
@pytest.mark.parametrize("generators", ["linear", "tanh"])
def test_parametrize_custom_backward_passes_gradcheck_and_gradgradcheck(n, generators):
    m = SpectralSphere(n, generators=generators)
    z = torch.randn(3, *m.param_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m.parametrize, (z,))
    assert torch.autograd.gradgradcheck(m.parametrize, (z,))
    single = z[0].detach().clone().requires_grad_()  # no batch dimension
    assert torch.autograd.gradcheck(m.parametrize, (single,))
    # the function's rotation outputs (what the double backward differentiates through)
    pattern = _skew_pattern(n - 1, torch.float64, None)
    rotations = lambda z: _RotatedSpectrum.apply(z, pattern, generators == "tanh")  # noqa: E731
    assert torch.autograd.gradcheck(rotations, (z,))


def test_identity_param_is_near_identity_with_nonvanishing_gradient():
    m = SpectralSphere(4)
    z = m.identity_param(dtype=torch.float64).requires_grad_()
    h = m.parametrize(z)
    c = math.tanh(3.0)
    torch.testing.assert_close(h, c * torch.eye(4, dtype=torch.float64) + (1 - c) / 4)
    loss = (torch.randn(4, 4, dtype=torch.float64) * h).sum()
    (grad,) = torch.autograd.grad(loss, z)
    assert grad.abs().min() > 1e-4  # every parameter, σ-logits (dσ/dc ≈ 0.0099) included


def test_exact_identity_limit_loses_the_gradient():
    """σ = 1 (H = I exactly) needs tanh at +∞: a large identity logit kills the gradient."""
    sharp = SpectralSphere(4, identity_logit=20.0)
    z = sharp.identity_param(dtype=torch.float32).requires_grad_()
    h = sharp.parametrize(z)
    torch.testing.assert_close(h, torch.eye(4))
    (grad,) = torch.autograd.grad(h.trace(), z)
    assert grad.abs().max() == 0


def test_projx_is_the_nearest_point_and_idempotent():
    m = SpectralSphere(4)
    x = 2 * torch.randn(50, 4, 4, dtype=torch.float64)
    p = m.projx(x)
    assert m.constraint_error(p).max() <= 1e-12
    torch.testing.assert_close(m.projx(p), p)
    # nearest: no point of the set (random or on the segment to p) is closer
    others = m.random(50, 4, 4, dtype=torch.float64)
    assert ((x - p).norm(dim=(-2, -1)) <= (x - others).norm(dim=(-2, -1)) + 1e-12).all()
    for t in (0.1, 0.5, 0.9):
        y = p + t * (others - p)  # convex set: the segment stays in it
        assert ((x - p).norm(dim=(-2, -1)) <= (x - y).norm(dim=(-2, -1)) + 1e-12).all()


def test_projx_clips_singular_values_of_the_ones_complement_block():
    m = SpectralSphere(4)
    basis = helmert_basis(4, dtype=torch.float64)
    block = torch.diag(torch.tensor([3.0, 0.5, -2.0], dtype=torch.float64))
    p = m.projx(basis @ block @ basis.T + 0.25)
    torch.testing.assert_close(basis.T @ p @ basis, torch.diag(torch.tensor(
        [1.0, 0.5, -1.0], dtype=torch.float64)))


def test_proju_is_idempotent_and_zero_sum():
    m = SpectralSphere(5)
    x = m.random(3, 5, 5, dtype=torch.float64)
    u = m.proju(x, torch.randn(3, 5, 5, dtype=torch.float64))
    torch.testing.assert_close(m.proju(x, u), u)
    assert u.sum(-1).abs().max() < 1e-12 and u.sum(-2).abs().max() < 1e-12


def test_retraction_is_first_order_at_interior_points():
    m = SpectralSphere(4)
    x = m.random(4, 4, dtype=torch.float64)
    u = m.proju(x, torch.randn(4, 4, dtype=torch.float64))
    for t in (1e-2, 1e-3):
        torch.testing.assert_close(m.retr(x, t * u), x + t * u)


def test_batched_bfloat16_is_computed_in_float32():
    m = SpectralSphere(4)
    z = torch.randn(2, 3, 9)
    h = m.parametrize(z.bfloat16())
    assert h.dtype == torch.bfloat16 and h.shape == (2, 3, 4, 4)
    torch.testing.assert_close(h.float(), m.parametrize(z.bfloat16().float()), atol=8e-3, rtol=0)


def test_parameter_count_matches_the_paper_at_four_streams():
    m = SpectralSphere(4)
    assert m.param_shape == (9,)
    assert m.sublayer_parameters(1) == 68
    assert m.sublayer_parameters(512) == 68 * 512
    assert m.num_parameters(1) == 36


def test_constraint_error_detects_each_violation():
    m = SpectralSphere(3)
    x = m.random(3, 3, dtype=torch.float64)
    assert m.constraint_error(x) < 1e-12
    assert m.constraint_error(x + 0.1 * torch.eye(3, dtype=torch.float64)) > 0.09
    big = 2 * torch.eye(3, dtype=torch.float64) - 1 / 3  # marginals 1, norm 2
    assert m.constraint_error(big) > 0.5


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="n must be >= 2"):
        SpectralSphere(1)
    with pytest.raises(TypeError, match="n must be an int"):
        SpectralSphere(4.0)
    with pytest.raises(ValueError, match="identity_logit"):
        SpectralSphere(4, identity_logit=-1.0)
    m = SpectralSphere(4)
    with pytest.raises(ValueError, match=r"z must have trailing shape \(9,\)"):
        m.parametrize(torch.zeros(8))
    with pytest.raises(ValueError, match="finite"):
        m.parametrize(torch.full((9,), float("nan")))
