"""Batching of Riemannian parameters: one manifold call per bucket of like parameters.

A GPT with a few dozen ``4 x 4`` mixers would pay one Python iteration and a dozen small
kernels per mixer if each were updated alone. Parameters whose manifolds act identically
(same class and configuration, see :func:`manifold_key`), with the same shape, dtype, device
and step count, form a :class:`Bucket`: their points, gradients and optimizer states are
stacked on a new leading axis, the manifold is called once on the stack (every manifold acts
on leading batch dimensions independently, which the manifold harness checks), and the
results are copied back with one ``torch._foreach_copy_``.

Step counts live, as in ``torch.optim``, in 0-dim float32 CPU tensors, so reading them never
waits on the device. Eagerly they become Python numbers (and part of the bucket key, so a
bucket shares one count); under ``torch.compile`` they stay tensors, so a changing count does
not recompile the step.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from itertools import repeat

import geoopt
import torch

__all__ = ["Bucket", "manifold_of", "manifold_key", "step_counts"]

_MODULE_ATTRIBUTES = frozenset(vars(torch.nn.Module()))
_PLAIN_VALUES = (bool, int, float, str, type(None))


def manifold_of(param: torch.Tensor) -> geoopt.Manifold | None:
    """The manifold of a ``geoopt.ManifoldParameter``; ``None`` for a Euclidean parameter
    (a plain tensor, or a ``ManifoldParameter`` on ``geoopt.Euclidean``)."""
    manifold = getattr(param, "manifold", None)
    if manifold is None or isinstance(manifold, geoopt.Euclidean):
        return None
    return manifold


def _is_plain(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_is_plain(v) for v in value)
    return isinstance(value, _PLAIN_VALUES)


def _config_value(name: str, value: object) -> Hashable | None:
    """A hashable stand-in for one configuration attribute, ``None`` if it has none."""
    if _is_plain(value):
        return value
    if isinstance(value, torch.Tensor) and value.device.type == "cpu" and value.numel() <= 4096:
        return ("tensor", value.dtype, tuple(value.shape), tuple(value.flatten().tolist()))
    return None


def manifold_key(manifold: geoopt.Manifold) -> Hashable:
    """A key equal for two manifolds that act identically on stacked points.

    Two instances of one class are interchangeable when their configuration is equal: every
    attribute that is a number, string, ``None``, tuple of those or small CPU tensor
    (compared by value), and the keys of their submodules (``Kronecker(A, B)``). Private
    dict attributes (``_bases``) are caches and ignored. Anything else (a large or device
    tensor, a callable) falls back to the identity of the instance, which is always safe
    and only forgoes batching. Computed once per manifold and cached by the optimizer.
    """
    config = []
    tensors = (*manifold._parameters.items(), *manifold._buffers.items(), *vars(manifold).items())
    for name, value in tensors:
        if name in _MODULE_ATTRIBUTES or value is None and name in manifold._buffers:
            continue
        if name.startswith("_") and isinstance(value, dict):
            continue
        stand_in = _config_value(name, value)
        if stand_in is None and value is not None:
            return (type(manifold), id(manifold))
        config.append((name, stand_in))
    children = tuple((name, manifold_key(child)) for name, child in manifold.named_children())
    return (type(manifold), tuple(sorted(config, key=lambda item: item[0])), children)


def step_counts(steps: list[torch.Tensor]) -> list[float] | list[torch.Tensor]:
    """The step counts as Python floats (eager: read from CPU, no device sync) or, while
    compiling, as the tensors themselves (so the graph does not specialize on the count)."""
    if torch.compiler.is_compiling():
        return steps
    return [float(s.item()) for s in steps]


@dataclass
class Bucket:
    """Parameters updated by one batched manifold call.

    ``max_step`` is the manifold's step-size safeguard (or ``None``); ``count`` is their
    shared step count: eagerly a float, read once when the bucket is formed (it is part of
    the bucket key) and raised by :meth:`advance` without reading the counts again; while
    compiling, after :meth:`advance`, a tensor of ones' shape that broadcasts against the
    stacked points, one count per parameter.

    The optimizer keeps a bucket from step to step while its parameters stay the same
    (:meth:`is_current`). Eagerly, the state it stores (and the step counts) then lives in
    one stacked tensor per name, each parameter's state a row of it (``state[name]`` is a
    view): stacking it again is free, storing it is one copy, counting is one addition.
    """

    manifold: geoopt.Manifold
    max_step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
    params: list[torch.Tensor]
    states: list[dict]
    count: float | torch.Tensor = 0.0
    #: name -> (stacked tensor, the rows of it that the states hold)
    _stacks: dict[str, tuple[torch.Tensor, list[torch.Tensor]]] = field(default_factory=dict)

    def is_current(self, state: dict) -> bool:
        """Whether the optimizer ``state`` still holds this bucket's state dicts, at its count
        (it does unless they were replaced or the counts were changed from outside)."""
        if not all(map(operator.is_, map(state.get, self.params), self.states)):
            return False
        stacked = self._stacked_rows("step")
        if stacked is not None:  # one read for all the counts
            return all(c == self.count for c in stacked.tolist())
        return all("step" in s and float(s["step"]) == self.count for s in self.states)

    def _stacked_rows(self, name: str) -> torch.Tensor | None:
        """The stacked tensor whose rows the states hold under ``name``, if they still do."""
        record = self._stacks.get(name)
        if record is None or not all(
                map(operator.is_, map(dict.get, self.states, repeat(name)), record[1])):
            return None
        return record[0]

    def _keep_stacked(self, name: str, value: torch.Tensor) -> None:
        """Store ``value`` (a fresh stack) as the states' ``name``: each gets a row of it."""
        rows = list(value.unbind(0))
        for state, row in zip(self.states, rows, strict=True):
            state[name] = row
        self._stacks[name] = (value, rows)

    def advance(self) -> float | torch.Tensor:
        """Add one to every step count and return the bucket's count."""
        if torch.compiler.is_compiling():
            steps = [s["step"] for s in self.states]
            torch._foreach_add_(steps, 1)
            x = self.params[0]
            leading = (len(steps),) if len(steps) > 1 else ()
            self.count = torch.stack(steps).to(x.device).view(*leading, *(1,) * x.dim())
            return self.count
        stacked = None if self._unbatched() else self._stacked_rows("step")
        if stacked is not None:
            stacked.add_(1)
        else:
            steps = [s["step"] for s in self.states]
            torch._foreach_add_(steps, 1)
            if not self._unbatched():
                self._keep_stacked("step", torch.stack(steps))
        self.count += 1
        return self.count

    # A bucket of one skips the stacking: its tensors are used as they are (manifold maps
    # are cheaper without a batch dimension on small matrices), in-place updates of its
    # state reach the state itself, and storing that same tensor back is a no-op.
    def _stacked(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return tensors[0] if len(tensors) == 1 else torch.stack(tensors)

    def _unstacked(self, value: torch.Tensor) -> list[torch.Tensor]:
        return [value] if len(self.params) == 1 else list(value.unbind(0))

    # The step runs under ``torch.no_grad``, so stacking the parameters themselves records
    # no autograd history and writing into them is allowed: no ``detach`` per parameter.
    def point(self) -> torch.Tensor:
        """The parameters stacked, shape ``(k, *param.shape)``, outside autograd (a bucket of
        one: the parameter itself, detached)."""
        return self.params[0].detach() if len(self.params) == 1 else torch.stack(self.params)

    def grad(self) -> torch.Tensor:
        """Their gradients stacked."""
        return self._stacked([p.grad for p in self.params])

    def stack(self, name: str) -> torch.Tensor:
        """State ``name`` of every parameter, stacked (the stored stack itself where the
        states are its rows: updating it in place updates the state)."""
        stacked = None if self._unbatched() else self._stacked_rows(name)
        if stacked is not None:
            return stacked
        return self._stacked([s[name] for s in self.states])

    def store_point(self, x: torch.Tensor) -> None:
        """Write the stacked points ``x`` back into the parameters."""
        torch._foreach_copy_(self.params, self._unstacked(x))

    def store(self, name: str, value: torch.Tensor) -> None:
        """Write stacked state back (created on first use, one tensor per parameter)."""
        stacked = None if self._unbatched() else self._stacked_rows(name)
        if stacked is not None:
            if value is not stacked:
                stacked.copy_(value)
        elif not self._unbatched():  # the states become rows of one stack from now on
            self._keep_stacked(name, value.clone(memory_format=torch.contiguous_format))
        elif name not in self.states[0]:
            for state, row in zip(self.states, self._unstacked(value), strict=True):
                state[name] = row.clone()
        elif not (len(self.states) == 1 and value is self.states[0][name]):
            torch._foreach_copy_([s[name] for s in self.states], self._unstacked(value))

    def _unbatched(self) -> bool:
        """Whether the states are kept one tensor per parameter: a bucket of one, and any
        bucket while compiling (the compiled step re-forms its buckets every step)."""
        return len(self.states) == 1 or torch.compiler.is_compiling()

    def is_per_point(self, second_moment: torch.Tensor) -> bool:
        """Whether ``second_moment`` holds one number per point of the manifold (then a
        direction ``m / sqrt(v)`` is a multiple of the tangent vector ``m``)."""
        x = self.params[0]
        ndim = getattr(self.manifold, "ndim", x.dim())
        return math.prod(second_moment.shape[second_moment.dim() - ndim:]) == 1
