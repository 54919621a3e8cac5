"""``Linear(RMSNorm(x))`` with the norm moved behind the matmul, and a one-pass backward."""

from __future__ import annotations

import math

import torch

__all__ = ["rms_norm_linear"]


class _RMSNormLinear(torch.autograd.Function):
    """``(y, z, r)`` with ``z = v W̃ᵀ``, ``r = 1/√(mean(v²) + ε)`` per row and ``y = z ⊙ r``,
    where ``v`` is ``x`` with its last ``dims`` axes flattened into one of length ``d`` and
    ``W̃ = W diag g`` (RMSNorm's learnable scale ``g``, or ``W̃ = W`` without one).

    Backward, for cotangents ``(g, g_z, g_r)``::

        ḡ_z    = g ⊙ r + g_z                 ḡ_r = Σ_k (g ⊙ z)_k + g_r
        ∂ℓ/∂W̃ = ḡ_zᵀ v                       ∂ℓ/∂v = ḡ_z W̃  -  v ⊙ ḡ_r r³ / d
        ∂ℓ/∂W = ∂ℓ/∂W̃ diag g                 ∂ℓ/∂g = Σ_k (∂ℓ/∂W̃ ⊙ W)_k

    built in one buffer (a matmul, then one fused multiply-add over ``v``), where autograd
    through the composite would make several passes over ``x`` for the norm alone.

    Saved: ``x`` itself (not the flattened ``v``: streams expanded from one tensor have
    stride 0 and flatten into a copy, which the backward makes again for a moment instead of
    keeping it), ``y`` and ``r``, both *outputs*; ``z = y / r`` is recomputed (``r > 0``).
    ``y`` is the tensor a caller keeps anyway (the gates of a hyper-connection multiply it),
    so the projection is held once. ``W̃`` is made for the moment in each pass, not kept
    (a kept ``(k, d)`` product per call is ``k·d/rows`` more numbers per row). As outputs,
    ``y`` and ``r`` carry their graph, so a second differentiation reaches ``x``, ``W`` and
    ``g`` through them (hence ``g_z``, ``g_r``): double backward and ``torch.func``
    transforms (``generate_vmap_rule``) work through it.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, scale, eps, dims):
        flat = x.flatten(-dims)
        inverse = torch.rsqrt(torch.linalg.vector_norm(flat, dim=-1, keepdim=True).square()
                              / flat.shape[-1] + eps)
        raw = flat @ (weight if scale is None else weight * scale).mT
        return raw * inverse, raw, inverse

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, scale, _, dims = inputs
        out, _, inverse = output
        ctx.save_for_backward(x, weight, scale, out, inverse)
        ctx.dims = dims
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad, grad_raw, grad_inverse):
        x, weight, scale, out, inverse = ctx.saved_tensors
        scaled = weight if scale is None else weight * scale
        flat = x.flatten(-ctx.dims)
        total_raw = grad_raw if grad is None else grad * inverse
        if grad is not None and grad_raw is not None:
            total_raw = total_raw + grad_raw
        total_inverse = grad_inverse if grad is None else (grad * out).sum(-1, keepdim=True) \
            / inverse  # Σ g ⊙ z with z = y / r
        if grad is not None and grad_inverse is not None:
            total_inverse = total_inverse + grad_inverse
        grad_x = grad_weight = grad_scale = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.zeros_like(flat) if total_raw is None else total_raw @ scaled
            if total_inverse is not None:
                grad_x = torch.addcmul(grad_x, flat,
                                       total_inverse * inverse.pow(3) / -flat.shape[-1])
            grad_x = grad_x.view(x.shape)
        if (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]) and total_raw is not None:
            grad_scaled = (total_raw.reshape(-1, total_raw.shape[-1]).mT
                           @ flat.reshape(-1, flat.shape[-1]))  # ∂ℓ/∂W̃
            if ctx.needs_input_grad[1]:
                grad_weight = grad_scaled if scale is None else grad_scaled * scale
            if ctx.needs_input_grad[2]:
                grad_scale = (grad_scaled * weight).sum(0)
        return grad_x, grad_weight, grad_scale, None, None


def rms_norm_linear(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, *,
                    scale: torch.Tensor | None = None, dims: int = 1) -> torch.Tensor:
    """``F.linear(F.rms_norm(v, (d,), scale, eps=eps), weight)`` for ``v = x.flatten(-dims)``
    (the last ``dims`` axes of ``x`` as one row of length ``d``), ``weight`` ``(k, d)`` and
    RMSNorm's learnable ``scale`` ``(d,)`` (none: 1): shape ``(..., k)``, the leading axes
    of ``x``.

    Computed as ``(v Wᵀ) ⊙ r``, ``r = 1/√(mean(v²) + ε)`` per row, since the norm is one
    scalar per row and commutes with the linear map; the normalised copy of ``v`` is never
    made, and with ``dims > 1`` nor is a kept copy of ``v`` (a hyper-connection's
    ``vec x``, ``dims = 2``, of streams that are views of one tensor). This is the
    reordering of mHC's fused kernel (arXiv 2512.24880, Sec. 4.3), which pays off when
    ``k ≪ d`` (a hyper-connection projects ``n·C`` inputs onto ``2n + n²`` coefficients).
    Differentiable (custom backward, see :class:`_RMSNormLinear`).
    """
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError(f"x and weight must be tensors, got {type(x).__name__} and "
                        f"{type(weight).__name__}")
    if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= max(x.dim(), 1):
        raise ValueError(f"dims must be an int in [1, x.dim()], got {dims!r} for x of shape "
                         f"{tuple(x.shape)}")
    d = math.prod(x.shape[x.dim() - dims:])
    if weight.dim() != 2 or x.dim() < 1 or d != weight.shape[-1]:
        raise ValueError(f"weight must have shape (k, d) with d = the product of the last "
                         f"{dims} axes of x, got x of shape {tuple(x.shape)} and weight of "
                         f"shape {tuple(weight.shape)}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a number > 0, got {eps!r}")
    if scale is not None and (not isinstance(scale, torch.Tensor) or scale.shape != (d,)):
        raise ValueError(f"scale must be None or a tensor of shape ({d},), got "
                         f"{type(scale).__name__} {getattr(scale, 'shape', '')}")
    return _RMSNormLinear.apply(x, weight, scale, float(eps), dims)[0]
