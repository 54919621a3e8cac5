"""Leaving an autocast region for computations that must run in their inputs' precision."""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable
from typing import TypeVar

import torch

__all__ = ["autocast_off", "without_autocast"]

F = TypeVar("F", bound=Callable)


def autocast_off(device_type: str) -> contextlib.AbstractContextManager[None]:
    """``torch.autocast(device_type, enabled=False)`` where autocast is on for
    ``device_type``, else a no-op context (a block calls this on every step: entering an
    autocast context costs a few microseconds of Python even when there is nothing to turn
    off). Used where a computation must stay in its inputs' precision: the stream update of
    a hyper-connection, and its constraint maps, whose custom backwards would otherwise meet
    bf16 forward values with float32 cotangents."""
    # a device type without autocast (``meta``) has nothing to turn off
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def without_autocast(fn: F) -> F:
    """Decorator: run ``fn`` with autocast off on the device of its first tensor argument
    (:func:`autocast_off`). For the constraint maps (every ``Manifold.parametrize``, the
    Cayley map, the polar refinement): under a ``torch.autocast`` their small matmuls would
    run in bf16 — a rounding of ``4e-3`` where the sets are exact to ``1e-5`` — and a custom
    backward would meet bf16 forward values with float32 cotangents (``RuntimeError``)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensor = next((a for a in itertools.chain(args, kwargs.values())
                       if isinstance(a, torch.Tensor)), None)
        with autocast_off("cpu" if tensor is None else tensor.device.type):
            return fn(*args, **kwargs)

    wrapper.without_autocast = True
    return wrapper
