"""Recompute of hyper-connected stream updates in groups of ``L_r`` sublayers (mHC, arXiv
2512.24880, Sec. 4.3): only the stream entering a group, the branch outputs and the branches'
own activations stay alive between the forward and the backward pass."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from mhckit.functional.value_checks import value_checks

__all__ = ["recompute_streams", "optimal_group_size", "Stage"]

#: One sublayer as ``(read, branch, write)``: ``read(x) -> (h, state)`` (the branch input and
#: what the write needs), ``branch(h) -> F(h)``, ``write(state, F(h)) -> x_next``.
Stage = tuple[Callable[[torch.Tensor], tuple[torch.Tensor, Any]],
              Callable[[torch.Tensor], torch.Tensor],
              Callable[[Any, torch.Tensor], torch.Tensor]]


def optimal_group_size(n_streams: int, depth: int) -> int:
    """mHC's optimal recompute group ``L_r* = √(n·L/(n+2))`` (arXiv 2512.24880, Sec. 4.3),
    rounded up, in ``[1, depth]``, for ``depth = L`` sublayers on ``n`` streams.

    ``L_r*`` minimises ``n·C·⌈L/L_r⌉ + (n+2)·C·L_r``: the group inputs kept through the whole
    backward plus one group's recomputed streams and reads alive while it runs backward.
    Rounded up because the peak measured over forward and backward of the benchmark GPT
    (``benchmarks/memory.py``: n = 4, L = 8, ``L_r* = 2.31``) is lower at 3 than at 2.
    """
    for value, name in ((n_streams, "n_streams"), (depth, "depth")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return max(1, min(depth, math.ceil(math.sqrt(n_streams * depth / (n_streams + 2)))))


def recompute_streams(x: torch.Tensor, stages: Sequence[Stage], group_size: int
                      ) -> torch.Tensor:
    """Run ``x`` through ``stages`` (each ``x <- write(state, branch(h))``, ``h, state =
    read(x)``), recomputing the reads and writes of every ``group_size`` consecutive stages
    in the backward pass from the stream saved at the group's start.

    Per group, :func:`torch.utils.checkpoint.checkpoint` (non-reentrant) discards what the
    reads and writes saved (coefficient maps, mixed streams, the streams inside the group)
    and reruns them when the backward reaches the group. The branches are *not* rerun: in
    the forward pass their saved tensors are kept as usual (a ``saved_tensors_hooks`` over
    the branch call overrides the checkpoint's), their outputs ``F(h)`` are stored, and the
    recomputation writes the stored outputs back into the rebuilt streams. The gradient of
    ``F`` flows through the branch's own graph from the first pass. The branch input ``h``
    (a read) is recomputed too, not kept. Memory kept per group: its input stream ``n·C``
    per token, and per sublayer ``F(h)`` (``C``, in place of the ``h`` the branch would
    keep) besides the branch's activations; extra work: one more run of the reads and
    writes (value checks off: they repeat checked values).

    The recomputation repeats the forward's operations on the same values, so the
    gradients are those without recompute bit for bit (deterministic kernels). Without
    grad mode it is a plain loop. ``group_size`` need not divide ``len(stages)`` (the last
    group is shorter).
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    stages = list(stages)
    for start in range(0, len(stages), group_size):
        tape = _Tape(x, stages[start:start + group_size])
        if torch.is_grad_enabled():
            x = checkpoint(tape.run, x, use_reentrant=False, preserve_rng_state=False)
        else:
            x = tape.run(x)
    return x


class _Tape:
    """One group: its stages, its input stream, the branch outputs ``F(h)`` of the first
    pass and the branch inputs ``h`` of the latest recomputation.

    In the first pass each branch runs under saved-tensor hooks that keep what it saves
    (detached: a saved output held with its ``grad_fn`` would be a reference cycle) except
    its input ``h`` itself, which it gets back from the recomputation: a branch input is a
    stream read, as cheap to recompute as the rest. A recomputation (the outputs already
    stored) reuses ``F(h)`` instead of running the branch.
    """

    def __init__(self, x: torch.Tensor, stages: list[Stage]) -> None:
        self.input, self.stages = x, stages
        self.outputs: list[torch.Tensor] = []
        self.inputs: dict[int, torch.Tensor] = {}
        self.reading: tuple[int, torch.Tensor] | None = None

    def run(self, x: torch.Tensor) -> torch.Tensor:
        # a recomputation repeats values the first pass checked: no host reads for them
        with value_checks(False) if self.outputs else contextlib.nullcontext():
            return self._run(x)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        for index, (read, branch, write) in enumerate(self.stages):
            h, state = read(x)
            if index < len(self.outputs):  # recomputation
                self.inputs[index] = h.detach()
                out = self.outputs[index]
            else:
                self.reading = (index, h)
                with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
                    out = branch(h)
                self.reading = None  # the hooks live on in the graph: do not hold h there
                self.outputs.append(out)
            x = write(state, out)
        return x

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor | int:
        index, h = self.reading
        return index if tensor is h else tensor.detach()

    def _unpack(self, saved: torch.Tensor | int) -> torch.Tensor:
        if isinstance(saved, torch.Tensor):
            return saved
        if torch.is_grad_enabled():
            raise RuntimeError("recompute_streams does not support double backward "
                               "(create_graph=True) through a branch that saves its input")
        if saved not in self.inputs:  # the backward reached the branch before any write
            with torch.no_grad():
                self.run(self.input)
        return self.inputs[saved]
