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


def test_dims_flattens_inside_and_keeps_no_copy_of_expanded_rows():
    """``dims=2`` normalises and projects ``vec`` of the last two axes, equal in value and
    gradient to flattening first; for rows expanded from one tensor (stride 0) the kept
    tensors are the input view and the outputs, not a flattened copy."""
    generator = torch.Generator().manual_seed(2)
    base = torch.randn(5, 1, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 24, generator=generator, dtype=torch.float64, requires_grad=True)
    x = base.expand(5, 4, 6)
    assert torch.autograd.gradcheck(lambda b, w: rms_norm_linear(b.expand(5, 4, 6), w, dims=2),
                                    (base, weight))
    assert torch.autograd.gradgradcheck(
        lambda b, w: rms_norm_linear(b.expand(5, 4, 6), w, dims=2), (base, weight))
    torch.testing.assert_close(rms_norm_linear(x, weight, dims=2),
                               composite(x.flatten(-2), weight))
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        out = rms_norm_linear(x, weight, dims=2)
    storages = {t.untyped_storage().data_ptr() for t in kept}
    assert storages <= {base.untyped_storage().data_ptr(), weight.untyped_storage().data_ptr(),
                        out.untyped_storage().data_ptr()} | {
        t.untyped_storage().data_ptr() for t in kept if t.shape == (5, 1)}  # r
    assert all(t.numel() != 5 * 24 or t.stride(-2) == 0 for t in kept)  # no flattened copy


def test_dims_out_of_range_or_a_weight_of_another_width_is_refused():
    with pytest.raises(ValueError, match="dims must be an int"):
        rms_norm_linear(torch.ones(2, 3), torch.ones(1, 3), dims=3)
    with pytest.raises(ValueError, match="product of the last 2 axes"):
        rms_norm_linear(torch.ones(2, 3, 4), torch.ones(1, 4), dims=2)


def test_scale_is_rms_norms_weight_in_value_gradient_and_second_derivative():
    """``scale=g`` is ``F.rms_norm``'s weight: equal to the composite, and gradcheck /
    gradgradcheck in float64 for ``x``, ``W`` and ``g`` together (also with ``dims=2``)."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(3, 2, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    scale = (1 + 0.3 * torch.randn(8, generator=generator, dtype=torch.float64)
             ).requires_grad_()

    def ours(x, weight, scale):
        return rms_norm_linear(x, weight, scale=scale, dims=2)

    def ref(x, weight, scale):
        return F.linear(F.rms_norm(x.flatten(-2), (8,), scale, eps=1e-6), weight)

    torch.testing.assert_close(ours(x, weight, scale), ref(x, weight, scale))
    grad = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    got = torch.autograd.grad(ours(x, weight, scale), (x, weight, scale), grad)
    want = torch.autograd.grad(ref(x, weight, scale), (x, weight, scale), grad)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(ours, (x, weight, scale))
    assert torch.autograd.gradgradcheck(ours, (x, weight, scale))
    with pytest.raises(ValueError, match=r"scale must be None or a tensor of shape \(8,\)"):
        rms_norm_linear(x, weight, scale=torch.ones(4), dims=2)
