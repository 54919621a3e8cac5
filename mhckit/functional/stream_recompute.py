"""Recompute of hyper-connected streams in groups of ``L_r`` sublayers (mHC, arXiv 2512.24880,
Sec. 4.3): only the stream entering a group stays alive between the forward and the backward
pass; the streams inside it, and the branch inputs read from them, are rebuilt in the
backward from that stream and the coefficients."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import torch
from torch.utils.checkpoint import checkpoint

from mhckit.functional.stream_mix import stream_mix, stream_write, stream_write_
from mhckit.functional.value_checks import value_checks

__all__ = ["recompute_streams", "optimal_group_size", "Stage", "Coefficients"]

#: ``(H_pre, H_res, H_post)`` of one sublayer: shapes ``(..., n)``, ``(..., n, n)``,
#: ``(..., n)`` (per token, or static and broadcast).
Coefficients = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

#: One sublayer as ``(coefficients, branch)``: ``coefficients(x) -> (H_pre, H_res, H_post)``
#: for the streams ``x`` ``(..., n, C)``, ``branch(h) -> F(h)`` for the read ``h``
#: ``(..., C)``; the sublayer is ``x_next = H_res·x + H_postᵀ·F(H_pre·x)``.
Stage = tuple[Callable[[torch.Tensor], Coefficients], Callable[[torch.Tensor], torch.Tensor]]


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


def recompute_streams(x: torch.Tensor, stages: Sequence[Stage], group_size: int, *,
                      maps: bool = False) -> torch.Tensor:
    """Run the streams ``x`` ``(..., n, C)`` through ``stages``, each ``x <- H_res·x +
    H_postᵀ·F(H_pre·x)`` (:func:`~mhckit.functional.stream_mix`, then
    :func:`~mhckit.functional.stream_mix.stream_write`), keeping for the backward pass, of
    the streams, only the one entering each group of ``group_size`` consecutive stages.

    The forward pass runs every stage once, under saved-tensor hooks
    (:class:`torch.autograd.graph.saved_tensors_hooks`): whatever an operation saves for
    its backward is kept as usual, except the streams ``x`` entering the stages of a group
    and their reads ``h = H_pre·x`` (the branch input), which are replaced by a
    placeholder. When the backward pass first asks for one of them, the group's streams
    and reads are rebuilt from the group's input with the stored coefficients and branch
    outputs, ``x_{k+1} = H_res,k·x_k + H_post,kᵀ·F_k`` (per stage one
    :func:`~mhckit.functional.stream_mix` and one multiply-add in place, without grad), and
    each is dropped once its last saver has used it. Nothing else is rerun: not the
    coefficient maps (Sinkhorn, Cayley solves; what they keep is ``O(n²)`` per token,
    against the stream's ``n·C``), not the branches.

    Kept per group: its input stream (``n·C`` per token; the first group's is the
    caller's ``x``, e.g. an embedding expanded without a copy); per stage the
    coefficients, what the coefficient maps save, and ``F(h)`` (``C``: the write keeps it,
    while ``h``, which the branch would keep, is rebuilt). Extra work: the rebuild, about
    one stream mix and one write per stage.

    With ``maps=True`` the coefficient maps are not kept either (mHC's choice): each
    stage's ``coefficients`` runs under :func:`torch.utils.checkpoint.checkpoint`
    (non-reentrant), which discards what it saves and reruns it, on the rebuilt stream,
    when the backward pass reaches it. What stays per stage is then the coefficients
    themselves (``2n + n²`` per token) and ``F(h)``; the extra work is one more forward of
    the coefficient maps (projection, Sinkhorn sweeps, Cayley solves) per stage.

    The rebuild repeats the forward's stream operations on the same values, so the
    gradients are those without recompute bit for bit (deterministic kernels). Without
    grad mode it is a plain loop. ``group_size`` need not divide ``len(stages)`` (the last
    group is shorter). Double backward (``create_graph=True``) through a rebuilt tensor
    raises ``RuntimeError``.
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if not isinstance(stages, Sequence):
        raise TypeError(f"stages must be a sequence of (coefficients, branch) pairs, got "
                        f"{type(stages).__name__}")
    for index, stage in enumerate(stages):
        if not (isinstance(stage, tuple) and len(stage) == 2 and all(map(callable, stage))):
            raise TypeError(f"stages[{index}] must be a (coefficients, branch) pair of "
                            f"callables, got {stage!r}")
    stages = list(stages)
    if not torch.is_grad_enabled():
        for coefficients, branch in stages:
            x = _stage(x, coefficients(x), branch)
        return x
    for start in range(0, len(stages), group_size):
        x = _Tape(x, maps).run(x, stages[start:start + group_size])
    return x


def _stage(x: torch.Tensor, coefficients: Coefficients,
           branch: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    h_pre, h_res, h_post = coefficients
    h, mixed = stream_mix(x, h_pre, h_res)
    return stream_write(mixed, h_post, branch(h))


class _Tape:
    """One group: its input stream, per stage the coefficients and the branch output of the
    forward pass, and the streams and reads rebuilt for the backward.

    A saved stream or read is packed as its key ``("x", k)`` / ``("h", k)``, counted, and
    unpacked from the rebuild; every other saved tensor is kept.
    """

    def __init__(self, x: torch.Tensor, maps: bool) -> None:
        self.input, self.maps = x.detach(), maps
        self.coefficients: list[Coefficients] = []
        self.grads: list[bool] = []  # with maps: whether each stage's stream requires grad
        self.outputs: list[torch.Tensor] = []
        self.uses: Counter[tuple[str, int]] = Counter()
        self.rebuilt: dict[tuple[str, int], torch.Tensor] = {}
        self.marked: dict[tuple[str, int], torch.Tensor] = {}  # during the forward only

    def run(self, x: torch.Tensor, stages: list[Stage]) -> torch.Tensor:
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            for index, (coefficients, branch) in enumerate(stages):
                self.marked = {("x", index): x}
                if self.maps:  # the checkpoint's rerun takes the rebuilt stream once more
                    self.uses["x", index] += 1
                    values = checkpoint(self._coefficients, coefficients, index,
                                        use_reentrant=False, preserve_rng_state=False)
                else:
                    values = coefficients(x)
                self.coefficients.append(tuple(v.detach() for v in values))
                h, mixed = stream_mix(x, values[0], values[1])
                self.marked[("h", index)] = h
                out = branch(h)
                self.outputs.append(out.detach())
                x = stream_write(mixed, values[2], out)
        self.marked = {}  # the hooks live on in the graph: hold no stream there
        return x

    def _coefficients(self, coefficients: Callable[[torch.Tensor], Coefficients], index: int
                      ) -> Coefficients:
        """``coefficients`` of stage ``index``'s stream: the live one in the forward pass, the
        rebuilt one when the checkpoint reruns it (value checks off: checked values)."""
        key = ("x", index)
        if key in self.marked:
            self.grads.append(self.marked[key].requires_grad)
            return coefficients(self.marked[key])
        # as in the forward (ops save for the gradients they will compute)
        x = self._take(key).detach().requires_grad_(self.grads[index])
        with value_checks(False):
            return coefficients(x)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor | tuple[str, int]:
        for key, marked in self.marked.items():
            if tensor is marked:
                self.uses[key] += 1
                return key
        # detached: a saved output held with its grad_fn would be a reference cycle
        return tensor if tensor.grad_fn is None else tensor.detach()

    def _unpack(self, saved: torch.Tensor | tuple[str, int]) -> torch.Tensor:
        if isinstance(saved, torch.Tensor):
            return saved
        if torch.is_grad_enabled():
            raise RuntimeError("recompute_streams does not support double backward "
                               "(create_graph=True) through a recomputed stream or read")
        return self._take(saved)

    def _take(self, key: tuple[str, int]) -> torch.Tensor:
        """A rebuilt stream or read for one of its users, dropped after the last one (a
        second backward rebuilds it)."""
        if key not in self.rebuilt:
            self._rebuild(key)
        tensor = self.rebuilt[key]
        self.uses[key] -= 1
        if self.uses[key] <= 0:
            del self.rebuilt[key]
        return tensor

    def _rebuild(self, wanted: tuple[str, int]) -> None:
        """The group's streams and reads still to be unpacked (and ``wanted``) from its
        input: the forward's stream operations on the same values (no grad), up to the
        last stream needed."""
        def needed(key: tuple[str, int]) -> bool:
            return self.uses[key] > 0 or key == wanted

        last = max(index for kind, index in [*self.uses, wanted] if needed((kind, index)))
        x = self.input
        with torch.no_grad():
            for index, ((h_pre, h_res, h_post), out) in enumerate(
                    zip(self.coefficients, self.outputs, strict=True)):
                if needed(("x", index)):
                    self.rebuilt["x", index] = x
                if index == last and not needed(("h", index)):
                    break
                h, mixed = stream_mix(x, h_pre, h_res)
                if needed(("h", index)):
                    self.rebuilt["h", index] = h
                if index == last:
                    break
                x = stream_write_(mixed, h_post, out)  # into the fresh mixed streams
