"""Riemannian SGD with momentum (dampening, Nesterov) carried by vector transport."""

from __future__ import annotations

from collections.abc import Iterable

import geoopt
import torch

from mhckit.functional.validation import check_bool, check_float
from mhckit.optim.base import RiemannianOptimizer
from mhckit.optim.buckets import Bucket

__all__ = ["RiemannianSGD"]


class RiemannianSGD(RiemannianOptimizer):
    r"""Riemannian stochastic gradient descent (Bonnabel, arXiv 1111.5280) with momentum.

    For a point ``x`` with Euclidean gradient ``g``, ``lr, μ`` (momentum), ``τ`` (dampening),
    ``λ`` (weight decay)::

        r   = egrad2rgrad(x, g)               (g + λx first when decay is coupled, the default)
        b   = r                               at the first step: momentum starts at the
                                              *Riemannian* gradient (geoopt starts at g)
        b   = μ b + (1 - τ) r                 later steps; b is a tangent vector at x
        d   = r + μ b  (Nesterov)   or   d = b
        x'  = retr_x(s · (-lr d - lr λ egrad2rgrad(x, x)))   (decoupled decay only)
        b   = transp_{x→x'}(b)

    ``s ∈ (0, 1]`` is the manifold's step-size safeguard (``max_step``; without it momentum
    SGD collapses entries of a doubly stochastic matrix to zero). Plain parameters follow
    ``torch.optim.SGD`` bit for bit (decoupled decay: ``x ← x(1 - lr λ)`` first). Like
    parameters are updated in one batched call (see :mod:`mhckit.optim.buckets`).

    Args:
        params: parameters or ``torch.optim`` parameter groups, plain and manifold mixed.
        lr: learning rate.
        momentum: ``μ ∈ [0, 1)``.
        dampening: ``τ ∈ [0, 1]``.
        weight_decay: ``λ >= 0``.
        nesterov: Nesterov momentum (needs ``μ > 0`` and ``τ = 0``).
        decoupled_weight_decay: SGDW decay instead of coupled L2 (``g + λx``, default).
        stabilize: re-project points (and ``b``) every ``stabilize`` steps; ``None``: never,
            the drift is reported by :meth:`constraint_error`.
    """

    _tangent_state = ("momentum_buffer",)

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 *, decoupled_weight_decay: bool = False, stabilize: int | None = None) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov,
                        decoupled_weight_decay=decoupled_weight_decay, stabilize=stabilize)
        super().__init__(params, defaults)

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        # momentum >= 1 never forgets a gradient (the buffer grows without bound)
        check_float(group["momentum"], "momentum", low=0.0, high=1.0, high_open=True)
        check_float(group["dampening"], "dampening", low=0.0, high=1.0)
        check_bool(group["nesterov"], "nesterov")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "nesterov=True requires momentum > 0 and dampening == 0, got "
                f"momentum={group['momentum']}, dampening={group['dampening']}")

    def _init_state(self, group: dict, state: dict, param: torch.Tensor,
                    manifold: geoopt.Manifold | None) -> None:
        if manifold is not None:  # counts steps for ``stabilize``; plain state is torch's
            state["step"] = torch.zeros((), dtype=torch.float32)

    def _euclidean_update(self, group: dict, params: list[torch.Tensor]) -> None:
        # the arithmetic of torch.optim.sgd._multi_tensor_sgd, op for op
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        grads = [p.grad for p in params]
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                torch._foreach_mul_(params, 1 - lr * weight_decay)
            else:
                grads = torch._foreach_add(grads, params, alpha=weight_decay)
        if momentum != 0:
            states = [self.state[p] for p in params]
            if all("momentum_buffer" in s for s in states):
                bufs = [s["momentum_buffer"] for s in states]
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, grads, alpha=1 - group["dampening"])
            else:
                bufs = []
                for state, grad in zip(states, grads, strict=True):
                    if "momentum_buffer" in state:
                        buf = state["momentum_buffer"]
                        buf.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
                    else:
                        buf = state["momentum_buffer"] = grad.detach().clone()
                    bufs.append(buf)
            grads = torch._foreach_add(grads, bufs, alpha=momentum) if group["nesterov"] else bufs
        torch._foreach_add_(params, grads, alpha=-lr)

    def _riemannian_update(self, group: dict, bucket: Bucket) -> None:
        lr, momentum = group["lr"], group["momentum"]
        bucket.advance()
        x = bucket.point()
        r = self._riemannian_grad(group, bucket, x)
        if momentum == 0:
            y, _ = self._move(group, bucket, x, r * -lr)
            bucket.store_point(y)
            return
        if "momentum_buffer" not in bucket.states[0]:
            b = r.clone()
        else:
            b = bucket.stack("momentum_buffer").mul_(momentum)
            b.add_(r, alpha=1 - group["dampening"])
        d = r.add(b, alpha=momentum) if group["nesterov"] else b
        y, b = self._move(group, bucket, x, d * -lr, b)
        bucket.store_point(y)
        bucket.store("momentum_buffer", b)
