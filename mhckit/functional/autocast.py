"""Leaving an autocast region for computations that must run in their inputs' precision."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["autocast_off"]


def autocast_off(device_type: str) -> contextlib.AbstractContextManager[None]:
    """``torch.autocast(device_type, enabled=False)`` where autocast is on for
    ``device_type``, else a no-op context (a block calls this on every step: entering an
    autocast context costs a few microseconds of Python even when there is nothing to turn
    off). Used where a computation must stay in its inputs' precision: the stream update of
    a hyper-connection, and its constraint maps, whose custom backwards would otherwise meet
    bf16 forward values with float32 cotangents."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()
