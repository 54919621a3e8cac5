"""The read, the mix and the write of a hyper-connection, ``(H_pre·x, H_res·x)`` and
``m + H_postᵀ·F``, saving only their inputs for the backward."""

from __future__ import annotations

import torch

from mhckit.functional.autocast import autocast_off

__all__ = ["stream_mix", "stream_write", "stream_write_"]


def _contract(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Σ_c a_c b_jc``: ``a`` ``(..., C)`` against the rows of ``b`` ``(..., n, C)``, shape
    ``(..., n)``, as a matmul ``(1, C) @ (C, n)`` per token (on CPU several times faster than
    ``(b * a).sum(-1)``, which makes a product as large as ``b``, or ``b @ a``)."""
    return (a.unsqueeze(-2) @ b.mT).squeeze(-2)


def _combine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Σ_j a_j b_jc``: the weights ``a`` ``(..., n)`` over the rows of ``b`` ``(..., n, C)``,
    shape ``(..., C)``, as a matmul ``(1, n) @ (n, C)`` per token."""
    return (a.unsqueeze(-2) @ b).squeeze(-2)


class _StreamMix(torch.autograd.Function):
    """``(r, m) = (H_pre·x, H_res·x)``: two batched matmuls, ``(1, n) @ (n, C)`` and
    ``(n, n) @ (n, C)`` per token.

    Backward, for cotangents ``g_r`` ``(..., C)`` and ``g_m`` ``(..., n, C)``::

        ∂ℓ/∂x = H_resᵀ g_m + H_pre ⊗ g_r     ∂ℓ/∂H_pre = x g_r     ∂ℓ/∂H_res = g_m xᵀ

    (summed over the token axes where a coefficient is static): one matmul and one fused
    multiply-add for ``∂ℓ/∂x``, no stacked ``(1+n)×C`` cotangent. Only ``x``, ``H_pre`` and
    ``H_res`` are saved: neither the mixed streams nor a ``(1+n)×C`` product, which autograd
    through ``cat`` + ``matmul`` + ``split`` would keep alive through the read (``r`` has
    its own storage, and the branch saves it). The backward is made of differentiable
    operations on the saved inputs, so it can be differentiated again.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, h_pre, h_res):
        x = x.contiguous()  # once for both matmuls (streams expanded from one: stride 0)
        return _combine(h_pre.to(x.dtype), x), h_res.to(x.dtype) @ x

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_read, grad_mixed):
        x, h_pre, h_res = ctx.saved_tensors
        grad_x = grad_pre = grad_res = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            x = x.contiguous()  # once for the products with x (stride 0: expanded)
        if ctx.needs_input_grad[0]:
            pre = h_pre.to(x.dtype).unsqueeze(-1)
            if grad_mixed is not None:
                grad_x = h_res.to(x.dtype).mT @ grad_mixed
                if grad_read is not None:
                    grad_x = torch.addcmul(grad_x, pre, grad_read.unsqueeze(-2))
            elif grad_read is not None:
                grad_x = pre * grad_read.unsqueeze(-2)
            if grad_x is not None:
                grad_x = grad_x.sum_to_size(x.shape)
        if ctx.needs_input_grad[1] and grad_read is not None:
            grad_pre = _contract(grad_read, x).sum_to_size(h_pre.shape).to(h_pre.dtype)
        if ctx.needs_input_grad[2] and grad_mixed is not None:
            grad_res = (grad_mixed @ x.mT).sum_to_size(h_res.shape).to(h_res.dtype)
        return grad_x, grad_pre, grad_res


def _write(mixed: torch.Tensor, h_post: torch.Tensor, out: torch.Tensor,
           into: torch.Tensor | None = None) -> torch.Tensor:
    """``m + H_post ⊗ F``, one fused multiply-add (into ``into`` when given)."""
    return torch.addcmul(mixed, h_post.unsqueeze(-1), out.unsqueeze(-2), out=into)


class _StreamWrite(torch.autograd.Function):
    """``y = m + H_post ⊗ F``: one fused multiply-add. Backward, for the cotangent ``g``
    ``(..., n, C)``::

        ∂ℓ/∂m = g     ∂ℓ/∂H_post = g F     ∂ℓ/∂F = H_postᵀ g

    each contraction one batched matmul per token, where autograd through ``addcmul`` makes
    an ``n×C`` product and reduces it, twice. Saves ``H_post`` and ``F`` (as ``addcmul``
    does); differentiable backward (double backward, ``torch.func``).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(mixed, h_post, out):
        return _write(mixed, h_post, out)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, h_post, out = inputs
        ctx.save_for_backward(h_post, out)
        ctx.mixed_shape = inputs[0].shape
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad):
        h_post, out = ctx.saved_tensors
        if grad is None:
            return None, None, None
        grad = grad.contiguous()  # once (e.g. stride 0 from a mean over the streams)
        grad_mixed = grad_post = grad_out = None
        if ctx.needs_input_grad[0]:
            grad_mixed = grad.sum_to_size(ctx.mixed_shape)
        if ctx.needs_input_grad[1]:  # in the cotangent's dtype (F may be narrower: autocast)
            grad_post = _contract(out.to(grad.dtype), grad).sum_to_size(h_post.shape)
        if ctx.needs_input_grad[2]:
            grad_out = _combine(h_post.to(grad.dtype), grad).sum_to_size(out.shape)
        return grad_mixed, grad_post, grad_out


def _check_coefficients(x: torch.Tensor, h_pre: torch.Tensor, h_res: torch.Tensor) -> None:
    if not all(isinstance(t, torch.Tensor) for t in (x, h_pre, h_res)):
        raise TypeError(f"x, h_pre and h_res must be tensors, got {type(x).__name__}, "
                        f"{type(h_pre).__name__} and {type(h_res).__name__}")
    n = x.shape[-2] if x.dim() >= 2 else None
    if n is None or h_pre.dim() < 1 or h_pre.shape[-1] != n or h_res.dim() < 2 or \
            h_res.shape[-2:] != (n, n):
        raise ValueError(f"x must have shape (..., n, C), h_pre (..., n) and h_res (..., n, n), "
                         f"got {tuple(x.shape)}, {tuple(h_pre.shape)} and {tuple(h_res.shape)}")


def stream_mix(x: torch.Tensor, h_pre: torch.Tensor, h_res: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The read ``H_pre·x`` ``(..., C)`` and the mixed streams ``H_res·x`` ``(..., n, C)`` of a
    hyper-connection ``x_next = H_res·x + H_postᵀ·F(H_pre·x)`` (HC, arXiv 2409.19606; mHC,
    arXiv 2512.24880, eq. (3)), for streams ``x`` ``(..., n, C)``, ``h_pre`` ``(..., n)`` and
    ``h_res`` ``(..., n, n)`` (coefficients per token, or static and broadcast).

    The backward (:class:`_StreamMix`) keeps only ``x`` and the coefficients, so a block
    built on it stores per sublayer the stream input, the read (kept by the branch) and
    ``F``'s output (kept by the write for ``∂ℓ/∂H_post``), not the mixed streams. The products
    are computed in ``x``'s dtype with autocast off (the coefficients are cast to it): the
    stream update stays in the stream's precision.
    """
    _check_coefficients(x, h_pre, h_res)
    with autocast_off(x.device.type):
        return _StreamMix.apply(x, h_pre, h_res)


def stream_write(mixed: torch.Tensor, h_post: torch.Tensor, out: torch.Tensor
                 ) -> torch.Tensor:
    """The write of a hyper-connection, ``x_next = m + H_postᵀ·F``, for the mixed streams
    ``m = H_res·x`` ``(..., n, C)``, ``h_post`` ``(..., n)`` and the branch output ``F``
    ``(..., C)``; a custom backward (:class:`_StreamWrite`) that saves
    ``H_post`` and ``F``."""
    return _StreamWrite.apply(mixed, h_post, out)


def stream_write_(mixed: torch.Tensor, h_post: torch.Tensor, out: torch.Tensor
                  ) -> torch.Tensor:
    """:func:`stream_write` in place into ``mixed``, without autograd (an error on a tensor
    that requires grad): the same values bit for bit, no new buffer. For rebuilding streams
    (:func:`mhckit.functional.recompute_streams`)."""
    return _write(mixed, h_post, out, into=mixed)
