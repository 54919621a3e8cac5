"""The read and the mix of a hyper-connection, ``(H_pre·x, H_res·x)``, saving only ``x`` and the
coefficients for the backward."""

from __future__ import annotations

import torch

__all__ = ["stream_mix"]


class _StreamMix(torch.autograd.Function):
    """``(r, m) = (H_pre·x, H_res·x)`` as one matmul by ``K = [H_pre; H_res]`` ``(1+n, n)``.

    Backward, for cotangents ``g_r`` ``(..., C)`` and ``g_m`` ``(..., n, C)`` stacked into
    ``G = [g_r; g_m]`` ``(..., 1+n, C)``::

        ∂ℓ/∂x = Kᵀ G          [∂ℓ/∂H_pre; ∂ℓ/∂H_res] = G xᵀ

    (summed over the token axes where a coefficient is static). Only ``x``, ``H_pre`` and
    ``H_res`` are saved: neither the ``(1+n)×C`` product nor the mixed streams, which
    autograd through ``cat`` + ``matmul`` + ``split`` would keep alive through the read
    (``r`` is a view of the product, and the branch saves its input). The backward is made
    of differentiable operations on the saved inputs, so it can be differentiated again.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, h_pre, h_res):
        n = x.shape[-2]
        batch = torch.broadcast_shapes(h_pre.shape[:-1], h_res.shape[:-2])
        coupled = torch.cat([h_pre.to(x.dtype).unsqueeze(-2).expand(*batch, 1, n),
                             h_res.to(x.dtype).expand(*batch, n, n)], dim=-2)
        product = coupled @ x  # (..., 1 + n, C)
        # the read gets its own storage: the branch keeps it, the product is freed
        return product[..., 0, :].clone(), product[..., 1:, :]

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_read, grad_mixed):
        x, h_pre, h_res = ctx.saved_tensors
        n = x.shape[-2]
        if grad_read is None and grad_mixed is None:
            return None, None, None
        if grad_read is None:
            grad_read = torch.zeros_like(grad_mixed[..., 0, :])
        if grad_mixed is None:
            grad_mixed = torch.zeros_like(grad_read).unsqueeze(-2).expand(
                *grad_read.shape[:-1], n, grad_read.shape[-1])
        stacked = torch.cat([grad_read.unsqueeze(-2), grad_mixed], dim=-2)  # (..., 1 + n, C)
        grad_x = grad_pre = grad_res = None
        if ctx.needs_input_grad[0]:
            batch = torch.broadcast_shapes(h_pre.shape[:-1], h_res.shape[:-2])
            coupled = torch.cat([h_pre.to(x.dtype).unsqueeze(-2).expand(*batch, 1, n),
                                 h_res.to(x.dtype).expand(*batch, n, n)], dim=-2)
            grad_x = (coupled.mT @ stacked).sum_to_size(x.shape)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_coupled = stacked @ x.mT  # (..., 1 + n, n)
            if ctx.needs_input_grad[1]:
                grad_pre = grad_coupled[..., 0, :].sum_to_size(h_pre.shape).to(h_pre.dtype)
            if ctx.needs_input_grad[2]:
                grad_res = grad_coupled[..., 1:, :].sum_to_size(h_res.shape).to(h_res.dtype)
        return grad_x, grad_pre, grad_res


def stream_mix(x: torch.Tensor, h_pre: torch.Tensor, h_res: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The read ``H_pre·x`` ``(..., C)`` and the mixed streams ``H_res·x`` ``(..., n, C)`` of a
    hyper-connection ``x_next = H_res·x + H_postᵀ·F(H_pre·x)`` (HC, arXiv 2409.19606; mHC,
    arXiv 2512.24880, eq. (3)), for streams ``x`` ``(..., n, C)``, ``h_pre`` ``(..., n)`` and
    ``h_res`` ``(..., n, n)`` (coefficients per token, or static and broadcast).

    One batched matmul by ``[H_pre; H_res]``; the backward (:class:`_StreamMix`) keeps only
    ``x`` and the coefficients, so a block built on it stores per sublayer the stream input,
    the read (kept by the branch) and ``F``'s output (kept by the write for ``∂ℓ/∂H_post``),
    not the ``(1+n)×C`` product. The product is computed in ``x``'s dtype with autocast off
    (the coefficients are cast to it): the stream update stays in the stream's precision.
    """
    if not all(isinstance(t, torch.Tensor) for t in (x, h_pre, h_res)):
        raise TypeError(f"x, h_pre and h_res must be tensors, got {type(x).__name__}, "
                        f"{type(h_pre).__name__} and {type(h_res).__name__}")
    n = x.shape[-2] if x.dim() >= 2 else None
    if n is None or h_pre.dim() < 1 or h_pre.shape[-1] != n or h_res.dim() < 2 or \
            h_res.shape[-2:] != (n, n):
        raise ValueError(f"x must have shape (..., n, C), h_pre (..., n) and h_res (..., n, n), "
                         f"got {tuple(x.shape)}, {tuple(h_pre.shape)} and {tuple(h_res.shape)}")
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return _StreamMix.apply(x, h_pre, h_res)
    return _StreamMix.apply(x, h_pre, h_res)
