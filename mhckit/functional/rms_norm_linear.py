"""``Linear(RMSNorm(x))`` with the norm moved behind the matmul, and a one-pass backward."""

from __future__ import annotations

import torch

__all__ = ["rms_norm_linear"]


class _RMSNormLinear(torch.autograd.Function):
    """``(y, z, r)`` with ``z = x Wᵀ``, ``r = 1/√(mean(x²) + ε)`` per row and ``y = z ⊙ r``.

    Backward, for cotangents ``(g, g_z, g_r)`` and ``d`` the length of a row of ``x``::

        ḡ_z    = g ⊙ r + g_z                 ḡ_r = Σ_k (g ⊙ z)_k + g_r
        ∂ℓ/∂W = ḡ_zᵀ x                       ∂ℓ/∂x = ḡ_z W  -  x ⊙ ḡ_r r³ / d

    built in one buffer (a matmul, then one fused multiply-add over ``x``), where autograd
    through the composite would make several passes over ``x`` for the norm alone. ``z``
    and ``r`` are saved for the backward *as outputs*, so a second differentiation reaches
    ``x`` and ``W`` through them (hence ``g_z``, ``g_r``): double backward and
    ``torch.func`` transforms (``generate_vmap_rule``) work through it.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, eps):
        inverse = torch.rsqrt(torch.linalg.vector_norm(x, dim=-1, keepdim=True).square()
                              / x.shape[-1] + eps)
        raw = x @ weight.mT
        return raw * inverse, raw, inverse

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, _ = inputs
        _, raw, inverse = output
        ctx.save_for_backward(x, weight, raw, inverse)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad, grad_raw, grad_inverse):
        x, weight, raw, inverse = ctx.saved_tensors
        total_raw = grad_raw if grad is None else grad * inverse
        if grad is not None and grad_raw is not None:
            total_raw = total_raw + grad_raw
        total_inverse = grad_inverse if grad is None else (grad * raw).sum(-1, keepdim=True)
        if grad is not None and grad_inverse is not None:
            total_inverse = total_inverse + grad_inverse
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.zeros_like(x) if total_raw is None else total_raw @ weight
            if total_inverse is not None:
                grad_x = torch.addcmul(grad_x, x, total_inverse * inverse.pow(3) / -x.shape[-1])
        if ctx.needs_input_grad[1] and total_raw is not None:
            grad_weight = (total_raw.reshape(-1, total_raw.shape[-1]).mT
                           @ x.reshape(-1, x.shape[-1]))
        return grad_x, grad_weight, None


def rms_norm_linear(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``F.linear(F.rms_norm(x, (d,), eps=eps), weight)`` for ``x`` ``(..., d)`` and
    ``weight`` ``(k, d)``: shape ``(..., k)``.

    Computed as ``(x Wᵀ) ⊙ r``, ``r = 1/√(mean(x²) + ε)`` per row, since the norm is one
    scalar per row and commutes with the linear map; the normalised copy of ``x`` is never
    made. This is the reordering of mHC's fused kernel (arXiv 2512.24880, Sec. 4.3), which
    pays off when ``k ≪ d`` (a hyper-connection projects ``n·C`` inputs onto ``2n + n²``
    coefficients). Differentiable (custom backward, see :class:`_RMSNormLinear`).
    """
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError(f"x and weight must be tensors, got {type(x).__name__} and "
                        f"{type(weight).__name__}")
    if weight.dim() != 2 or x.dim() < 1 or x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"weight must have shape (k, d) with d = x.shape[-1], got x of shape "
                         f"{tuple(x.shape)} and weight of shape {tuple(weight.shape)}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a number > 0, got {eps!r}")
    return _RMSNormLinear.apply(x, weight, float(eps))[0]
