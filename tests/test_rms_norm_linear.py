"""``rms_norm_linear``: equal to ``Linear(RMSNorm(x))``, with a correct custom backward."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from mhckit.functional import rms_norm_linear


def composite(x, weight, eps=1e-6):
    return F.linear(F.rms_norm(x, (x.shape[-1],), eps=eps), weight)


@given(rows=st.integers(1, 6), d=st.integers(1, 12), k=st.integers(1, 5),
       scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_equals_linear_of_rms_norm_in_value_and_gradient(rows, d, k, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    x = (scale * torch.randn(2, rows, d, generator=generator, dtype=torch.float64))
    weight = torch.randn(k, d, generator=generator, dtype=torch.float64)
    grad = torch.randn(2, rows, k, generator=generator, dtype=torch.float64)
    ours_x, ours_w = x.clone().requires_grad_(), weight.clone().requires_grad_()
    ref_x, ref_w = x.clone().requires_grad_(), weight.clone().requires_grad_()
    ours = rms_norm_linear(ours_x, ours_w)
    ref = composite(ref_x, ref_w)
    torch.testing.assert_close(ours, ref)
    ours.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(ours_x.grad, ref_x.grad)
    torch.testing.assert_close(ours_w.grad, ref_w.grad)


def test_gradcheck_and_gradgradcheck_in_float64():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rms_norm_linear, (x, weight))
    assert torch.autograd.gradgradcheck(rms_norm_linear, (x, weight))


def test_torch_func_jacrev_and_vmap_agree_with_the_composite():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    weight = torch.randn(3, 6, generator=generator, dtype=torch.float64)
    ours = torch.func.vmap(torch.func.jacrev(lambda v: rms_norm_linear(v, weight)))(x)
    ref = torch.func.vmap(torch.func.jacrev(lambda v: composite(v, weight)))(x)
    torch.testing.assert_close(ours, ref)


def test_zero_rows_give_zero_output_and_finite_gradients():
    x = torch.zeros(2, 5, requires_grad=True)
    weight = torch.randn(3, 5, requires_grad=True)
    out = rms_norm_linear(x, weight)
    out.sum().backward()
    assert bool((out == 0).all())
    assert bool(torch.isfinite(x.grad).all()) and bool(torch.isfinite(weight.grad).all())


@pytest.mark.parametrize("x, weight, eps, error, match", [
    ([1.0, 2.0], torch.ones(1, 2), 1e-6, TypeError, "x and weight must be tensors"),
    (torch.ones(3), torch.ones(2, 4), 1e-6, ValueError, "weight must have shape"),
    (torch.ones(3), torch.ones(3), 1e-6, ValueError, "weight must have shape"),
    (torch.ones(3), torch.ones(2, 3), 0.0, ValueError, "eps must be a number > 0"),
])
def test_bad_arguments_raise_naming_them(x, weight, eps, error, match):
    with pytest.raises(error, match=match):
        rms_norm_linear(x, weight, eps)
