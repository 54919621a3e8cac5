"""Riemannian Adam (AdamW-style decoupled decay, AMSGrad option)."""

from __future__ import annotations

from collections.abc import Iterable

import geoopt
import torch

from mhckit.functional.validation import check_bool, check_float
from mhckit.optim.base import RiemannianOptimizer
from mhckit.optim.buckets import Bucket, step_counts

__all__ = ["RiemannianAdam"]


class RiemannianAdam(RiemannianOptimizer):
    r"""Adam on products of manifolds (Bécigneul & Ganea, arXiv 1810.00760), AdamW by default.

    For a point ``x`` with Euclidean gradient ``g``, step ``t``, ``β₁, β₂, ε, lr, λ``::

        r   = egrad2rgrad(x, g)                   (g + λx first when decay is coupled)
        m   = β₁ m + (1 - β₁) r                   m is a tangent vector at x
        v   = β₂ v + (1 - β₂) ⟨r, r⟩_x            one number per point (component_inner)
        v̂   = max(v̂, v)  and use v̂ for v           (amsgrad)
        u   = -lr/(1 - β₁ᵗ) · m / (√v / √(1 - β₂ᵗ) + ε)
        x'  = retr_x(s · (u - lr λ egrad2rgrad(x, x)))    (decoupled decay: the Riemannian
                                                           gradient of ½‖x‖², in T_x)
        m   = transp_{x→x'}(m)

    ``s ∈ (0, 1]`` is the manifold's step-size safeguard (``max_step``). Because ``v`` is one
    number per point, ``u`` is a multiple of the tangent ``m``; when a manifold's
    ``component_inner`` is finer (a product manifold), ``u`` is projected onto ``T_x``.
    ``v`` is an inner product, invariant under transport, so it is not transported.

    Plain parameters follow ``torch.optim.AdamW`` (``decoupled_weight_decay=True``) or
    ``torch.optim.Adam`` (``False``) bit for bit: ``v`` is elementwise, ``x' = x(1 - lr λ)
    + u``. Like parameters are updated in one batched call (see :mod:`mhckit.optim.buckets`).

    Args:
        params: parameters or ``torch.optim`` parameter groups, plain and manifold mixed.
        lr: learning rate.
        betas: ``(β₁, β₂)``, each in ``[0, 1)``.
        eps: ``ε > 0`` added to ``√v̂``.
        weight_decay: ``λ >= 0``.
        decoupled_weight_decay: AdamW decay (default) or coupled L2 (``g + λx``).
        amsgrad: use the running maximum of ``v`` (Reddi et al., arXiv 1904.09237).
        stabilize: re-project points (and ``m``) every ``stabilize`` steps; ``None``: never,
            the drift is reported by :meth:`constraint_error`.
    """

    _tangent_state = ("exp_avg",)

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, decoupled_weight_decay: bool = True,
                 amsgrad: bool = False, stabilize: int | None = None) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay, amsgrad=amsgrad,
                        stabilize=stabilize)
        super().__init__(params, defaults)

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        check_float(betas[0], "betas[0]", low=0.0, high=1.0, high_open=True)
        check_float(betas[1], "betas[1]", low=0.0, high=1.0, high_open=True)
        check_float(group["eps"], "eps", low=0.0)
        check_bool(group["amsgrad"], "amsgrad")

    def _init_state(self, group: dict, state: dict, param: torch.Tensor,
                    manifold: geoopt.Manifold | None) -> None:
        state["step"] = torch.zeros((), dtype=torch.float32)
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if manifold is None:
            second = torch.zeros_like(param, memory_format=torch.preserve_format)
        else:
            second = torch.zeros_like(manifold.component_inner(param, param.grad))
        state["exp_avg_sq"] = second
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(second)

    def _euclidean_update(self, group: dict, params: list[torch.Tensor]) -> None:
        # the arithmetic of torch.optim.adam._multi_tensor_adam, op for op
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        weight_decay = group["weight_decay"]
        states = [self.state[p] for p in params]
        grads = [p.grad for p in params]
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1)
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                torch._foreach_mul_(params, 1 - lr * weight_decay)
            else:
                grads = torch._foreach_add(grads, params, alpha=weight_decay)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        counts = step_counts(steps)
        step_size = [(lr / (1 - beta1 ** c)) * -1 for c in counts]
        bias_correction2_sqrt = [(1 - beta2 ** c) ** 0.5 for c in counts]
        if group["amsgrad"]:
            maxima = [s["max_exp_avg_sq"] for s in states]
            torch._foreach_maximum_(maxima, exp_avg_sqs)
            denom = torch._foreach_sqrt(maxima)
        else:
            denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, eps)
        if torch.compiler.is_compiling():  # tensor step sizes: no addcdiv_ overload
            update = torch._foreach_div(exp_avgs, denom)
            torch._foreach_mul_(update, step_size)
            torch._foreach_add_(params, update)
        else:
            torch._foreach_addcdiv_(params, exp_avgs, denom, step_size)

    def _riemannian_update(self, group: dict, bucket: Bucket) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        manifold = bucket.manifold
        count = bucket.advance()
        x = bucket.point()
        r = self._riemannian_grad(group, bucket, x)
        m = bucket.stack("exp_avg").lerp_(r, 1 - beta1)
        v = bucket.stack("exp_avg_sq").mul_(beta2)
        v.add_(manifold.component_inner(x, r), alpha=1 - beta2)
        second = v
        if group["amsgrad"]:
            second = torch.maximum(bucket.stack("max_exp_avg_sq"), v)
            bucket.store("max_exp_avg_sq", second)
        denom = (second.sqrt() / (1 - beta2 ** count) ** 0.5).add_(eps)
        u = m / denom * ((lr / (1 - beta1 ** count)) * -1)
        if not bucket.is_per_point(second):
            u = manifold.proju(x, u)
        y, m = self._move(group, bucket, x, u, m)
        bucket.store_point(y)
        bucket.store("exp_avg", m)
        bucket.store("exp_avg_sq", v)
