"""Activation memory: bytes of tensor storage a forward pass leaves alive for the backward."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["live_activation_bytes", "StorageTracker"]


class StorageTracker(TorchDispatchMode):
    """Records a weak reference to the storage of every tensor an operation creates while it
    is active; :meth:`live_bytes` sums those still alive. With ``track_peak`` it also keeps
    ``peak``, the largest such sum after any operation (costs a pass over the storages per
    operation: for benchmarks, where ``torch.cuda.max_memory_allocated`` is unavailable)."""

    def __init__(self, track_peak: bool = False) -> None:
        super().__init__()
        self.storages: dict[int, tuple[StorageWeakRef, int]] = {}
        self.track_peak, self.peak = track_peak, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in torch.utils._pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                storage = tensor.untyped_storage()
                ref = StorageWeakRef(storage)
                self.storages.setdefault(ref.cdata, (ref, storage.nbytes()))
        if self.track_peak:
            self.peak = max(self.peak, self.live_bytes())
        return out

    def live_bytes(self) -> int:
        """Bytes of the recorded storages still alive."""
        alive = {cdata: entry for cdata, entry in self.storages.items() if not entry[0].expired()}
        self.storages = alive  # forget the freed ones (a weak reference pins the address)
        return sum(nbytes for _, nbytes in alive.values())


def live_activation_bytes(fn: Callable[[], Any], keep: Callable[[Any], Any] = lambda r: r
                          ) -> tuple[Any, int]:
    """Run ``fn()`` and count the bytes of the storages it allocated that are still alive
    once it returned and ``keep(result)`` is all that is held of the result: with ``fn`` a
    forward pass and ``keep`` picking the loss, that is what autograd (and anything else)
    keeps for the backward pass, the activation memory. Returns ``(keep(result), bytes)``.

    Storages are tracked through a ``TorchDispatchMode`` by weak references, so a tensor
    saved for backward counts once however many views or saves refer to it, and a
    temporary freed during the pass does not count. Parameters and inputs are not counted
    (they exist before ``fn``); on CUDA, ``torch.cuda.memory_allocated`` gives the same
    number up to allocator rounding.
    """
    tracker = StorageTracker()
    with tracker:
        result = fn()
    kept = keep(result)
    del result
    return kept, tracker.live_bytes()
