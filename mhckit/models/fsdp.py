"""Fully sharded data parallel training of the GPT (FSDP2, ``torch.distributed.fsdp.fully_shard``).

``torchrun ... -m mhckit train --parallel fsdp`` shards every transformer block, then the
root (embeddings, tied output layer, final norm), over all ranks: each rank stores ``1/W`` of
each parameter, gradient and AdamW moment, gathers a block's parameters for its forward and
backward, and reduce-scatters its gradients (ZeRO-3, Rajbhandari et al., arXiv 1910.02054;
PyTorch FSDP, Zhao et al., arXiv 2304.11277). The update is DDP's: the mean over ranks of
their gradients.

**Replicated**: Riemannian-mode mixers (``riemannian=True``) hold ``H_res`` as a
``geoopt.ManifoldParameter``, a small static ``n x n`` point moved by ``retr`` along a
Riemannian gradient. A shard of it is not a point of the manifold, so these parameters are
left out of sharding (``ignored_params``) and stay whole, plain tensors on every rank:
:meth:`ShardedGPT.average_replicated_gradients` all-reduces their gradients (mean over ranks)
before the step, so every rank takes the same Riemannian step from the same point and they
stay bit-identical; the Riemannian optimizer never sees a ``DTensor``.

**Gradient clipping** uses the global norm ``sqrt(|g_sharded|^2 + |g_replicated|^2)``:
``torch.nn.utils.clip_grad_norm_`` refuses a mix of ``DTensor`` and plain gradients, so
:meth:`ShardedGPT.clip_grad_norm_` takes the norm of each kind (a ``DTensor`` norm is
all-reduced) and scales both by the same factor.

**Checkpoints** are gathered: :meth:`ShardedGPT.full_state` all-gathers every ``DTensor`` of
the model and optimizer state dicts into the full tensor, kept on rank 0 only (on the CPU),
which writes the same single ``ckpt.pt`` as a one-process or DDP run (same keys, same
parameter-index optimizer layout, digests and run identity). Such a checkpoint resumes with
any world size and with or without FSDP: the model is loaded into the whole model before it
is sharded, and :meth:`ShardedGPT.shard_optimizer_state` cuts the full AdamW moments into this
rank's shards. (``torch.distributed.checkpoint`` would write one file per rank and reshard on
load; it is the better choice when the full state does not fit in rank 0's memory.)
"""

from __future__ import annotations

from typing import Any

import geoopt
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

from mhckit.models.checkpoint import rng_state, set_rng_state
from mhckit.models.gpt import GPT

__all__ = ["ShardedGPT", "GatheredState", "full_state"]


class GatheredState:
    """A state dict already gathered (:func:`full_state`), given where a module or
    optimizer is expected: ``state_dict()`` returns it."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def state_dict(self) -> dict[str, Any]:
        return self.state


def full_state(state: Any, *, keep: bool, memo: dict[int, Any] | None = None) -> Any:
    """``state`` (nested dicts, lists, tuples) with every ``DTensor`` replaced by its full
    tensor on the CPU where ``keep``, ``None`` elsewhere. Every rank must call it on states of
    the same structure (each ``full_tensor`` is an all-gather, in the same order on every
    rank); a tensor reached twice (the tied embedding and output weight) is gathered once."""
    memo = {} if memo is None else memo
    if isinstance(state, DTensor):
        if id(state) not in memo:
            full = state.full_tensor()
            memo[id(state)] = full.cpu() if keep else None
        return memo[id(state)]
    if isinstance(state, dict):
        return {k: full_state(v, keep=keep, memo=memo) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(full_state(v, keep=keep, memo=memo) for v in state)
    return state


class ShardedGPT:
    """A :class:`GPT` sharded in place with FSDP2 over the default process group (see the
    module docstring): the blocks, then the root; ``ManifoldParameter`` s replicated.

    Build the model and load its state first, then ``ShardedGPT(model, device)``, then the
    optimizer (over the sharded parameters)."""

    def __init__(self, model: GPT, device: torch.device) -> None:
        if model.config.recompute_group:
            raise ValueError("parallel='fsdp' does not support GPTConfig.recompute: the "
                             "recomputed sublayers run outside their block's forward, where "
                             "FSDP gathers the parameters; use parallel='ddp' or "
                             "recompute=False")
        self.model, self.device = model, device
        self.world_size, self.is_main = dist.get_world_size(), dist.get_rank() == 0
        self.replicated = [p for p in model.parameters()
                           if isinstance(p, geoopt.ManifoldParameter)]
        mesh = init_device_mesh(device.type, (self.world_size,))
        ignored = set(self.replicated)
        for block in model.transformer.h:
            fully_shard(block, mesh=mesh, ignored_params=ignored)
        fully_shard(model, mesh=mesh, ignored_params=ignored)
        self._replica: GPT | None = None

    def average_replicated_gradients(self) -> None:
        """Replace each replicated parameter's gradient by its mean over ranks (one
        all-reduce of all of them, flattened): after it, every rank holds the same bits."""
        grads = [p.grad for p in self.replicated if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        for g, chunk in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            g.copy_(chunk.view_as(g))

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Scale all gradients by ``min(1, max_norm / (norm + 1e-6))`` (torch's rule), with
        ``norm`` the 2-norm of all of them over all ranks; returns ``norm`` (the same on
        every rank). Call after :meth:`average_replicated_gradients`."""
        groups: list[list[torch.Tensor]] = [[], []]  # parameters with sharded, whole gradients
        for p in self.model.parameters():
            if p.grad is not None:
                groups[not isinstance(p.grad, DTensor)].append(p)
        groups = [g for g in groups if g]
        norms = []
        for params in groups:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
            norms.append((norm.full_tensor() if isinstance(norm, DTensor) else norm)
                         .to(self.device))
        total = torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(
            (), device=self.device)
        for params in groups:
            torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
        return total

    def full_state(self, optimizer: Any) -> tuple[GatheredState, GatheredState]:
        """The model's and ``optimizer``'s full state dicts, as a one-process run has them
        (collective: every rank calls it; only rank 0's hold the tensors)."""
        memo: dict[int, Any] = {}
        model = full_state(self.model.state_dict(), keep=self.is_main, memo=memo)
        return GatheredState(model), GatheredState(
            full_state(optimizer.state_dict(), keep=self.is_main, memo=memo))

    def shard_optimizer_state(self, optimizer: Any, state: dict[str, Any]) -> dict[str, Any]:
        """A full :class:`~mhckit.models.optimizers.JointOptimizer` state dict (any world
        size, with or without FSDP) with each moment of a sharded parameter cut into this
        rank's shard, for ``optimizer.load_state_dict``. Entries that do not fit are left as
        they are, for ``load_state_dict`` to refuse."""
        out = dict(state)
        for name, opt in optimizer.optimizers.items():
            if not isinstance(state.get(name), dict) or not isinstance(
                    state[name].get("state"), dict):
                continue
            params = [p for group in opt.param_groups for p in group["params"]]
            entries = {}
            for index, entry in state[name]["state"].items():
                param = params[index] if isinstance(index, int) and index < len(params) else None
                if isinstance(param, DTensor) and isinstance(entry, dict):
                    entry = {k: distribute_tensor(v.to(self.device), param.device_mesh,
                                                  param.placements, src_data_rank=None)
                             if torch.is_tensor(v) and v.shape == param.shape else v
                             for k, v in entry.items()}
                entries[index] = entry
            out[name] = {**state[name], "state": entries}
        return out

    def replica(self) -> GPT | None:
        """On rank 0, a whole (unsharded) copy of the model with its current weights, for
        what runs on rank 0 alone (mixer diagnostics, samples); ``None`` on the other ranks.
        Collective: every rank calls it. The copy is built once, without drawing from the
        global RNGs (training's stream is the same whether or not it exists)."""
        state = full_state(self.model.state_dict(), keep=self.is_main)
        if not self.is_main:
            return None
        if self._replica is None:
            saved = rng_state()
            self._replica = GPT(self.model.config).to(self.device)
            set_rng_state(saved)
        self._replica.load_state_dict(state)
        self._replica.train(self.model.training)
        return self._replica

