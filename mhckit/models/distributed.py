"""Data-parallel training on ``torch.distributed`` (DDP or FSDP2), started by ``torchrun``.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without them training runs
in one process. The backend is NCCL when CUDA is present (one GPU per local rank), gloo on
CPU. Rank 0 logs and writes checkpoints. ``TrainConfig.parallel`` chooses how the ranks
share the model (:data:`PARALLEL_MODES`): ``ddp`` replicates it and all-reduces gradients,
``fsdp`` shards it (:mod:`mhckit.models.fsdp`). What rank 0 alone does (the checkpoint
write) runs through :meth:`Distributed.on_main`, so its failure ends every rank.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Distributed", "MainRankError", "resolve_device", "check_device_name",
           "DEVICE_TYPES", "PARALLEL_MODES"]


class MainRankError(RuntimeError):
    """Raised on every other rank when what rank 0 did alone failed (its message)."""


#: Device names a run accepts: ``auto``, ``cpu``, ``cuda``, ``cuda:<index>``, ``mps``.
DEVICE_TYPES = ("cpu", "cuda", "mps")
#: ``TrainConfig.parallel``: one process, replicas (DDP), or shards (FSDP2).
PARALLEL_MODES = ("none", "ddp", "fsdp")


def check_device_name(name: object, field: str = "device") -> str:
    """``name`` is ``"auto"`` or ``<type>[:<index>]`` of :data:`DEVICE_TYPES` (``ValueError``
    naming ``field`` otherwise); whether that device exists is :func:`resolve_device`'s."""
    if not isinstance(name, str):
        raise TypeError(f"{field} must be a str, got {type(name).__name__} {name!r}")
    kind, _, index = name.partition(":")
    if name != "auto" and (kind not in DEVICE_TYPES or (index and not index.isdigit())
                           or name.endswith(":")):
        raise ValueError(f"{field} must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps', "
                         f"got {name!r}")
    return name


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"``: CUDA when present, else the CPU; any other name is a torch device, which
    must be present (``ValueError`` naming it otherwise, not torch's ``AssertionError``)."""
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and (not torch.cuda.is_available() or (
            device.index is not None and device.index >= torch.cuda.device_count())):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise ValueError(f"device {name!r} is not available ({count} CUDA devices visible); "
                         "use --device cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} is not available; use --device cpu or auto")
    return device


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # this object started the process group and closes it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str = "auto") -> tuple[Distributed, torch.device]:
        """Join the process group ``torchrun`` describes (if any); returns it and the device
        this rank computes on."""
        if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
            return cls(), resolve_device(device)
        local_rank = int(os.environ["LOCAL_RANK"])
        target = resolve_device(device)
        if target.type == "cuda":
            target = torch.device("cuda", local_rank)
            torch.cuda.set_device(target)
        owns_group = not dist.is_initialized()
        if owns_group:
            dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
        env = cls(int(os.environ["RANK"]), local_rank, int(os.environ["WORLD_SIZE"]), owns_group)
        return env, target

    def parallel_mode(self, requested: str) -> str:
        """What this run does for ``TrainConfig.parallel = requested``: ``requested`` under
        ``torchrun`` with several ranks (``"none"`` is refused there: each rank would train
        its own model into the same directory), ``"none"`` in one process, whatever was
        requested (a DDP or FSDP checkpoint resumes in one process unchanged)."""
        if not self.enabled:
            return "none"
        if requested == "none":
            raise ValueError(f"parallel='none' trains in one process, but torchrun started "
                             f"{self.world_size}; use --parallel ddp or --parallel fsdp")
        return requested

    def mean(self, value: float, device: torch.device) -> float:
        """The mean of ``value`` over ranks."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(t) / self.world_size

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (on every rank)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def on_main(self, action: Callable[[], Any]) -> None:
        """Run ``action`` on rank 0 only, and let every rank know how it ended (one
        broadcast): if it raised, rank 0 raises the error and the other ranks a
        :class:`MainRankError` with its message, instead of waiting for rank 0 in their next
        collective until the process group times out."""
        error = None
        if self.is_main:
            try:
                action()
            except Exception as err:  # every rank must learn of any failure, then it re-raises
                error = err
        if self.enabled:
            outcome = [None if error is None else f"{type(error).__name__}: {error}"]
            dist.broadcast_object_list(outcome, src=0)
            if not self.is_main and outcome[0] is not None:
                raise MainRankError(f"rank 0 failed: {outcome[0]}")
        if error is not None:
            raise error

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
