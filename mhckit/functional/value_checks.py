"""One switch for the argument checks that read tensor values back to the host."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

__all__ = ["value_checks", "value_checks_enabled"]

_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("mhckit_value_checks",
                                                                default=True)


def value_checks_enabled() -> bool:
    """Whether checks that read values (NaN/inf entries, a point off its set) run now.

    They run by default. They are off inside ``with value_checks(False)`` and always while
    ``torch.compile`` traces: reading a value back to the host would break the graph (and
    on a GPU each one waits for the device). Checks of types and shapes always run.
    """
    return not torch.compiler.is_compiling() and _ENABLED.get()


@contextlib.contextmanager
def value_checks(enabled: bool) -> Iterator[None]:
    """Turn the value checks of mhckit's functions and manifolds on or off in this block
    (like ``torch.distributions``' ``validate_args``), for callers that produced the values
    themselves. :mod:`mhckit.optim` turns them off inside ``step``, whose points are on
    their sets by construction, so a step makes no host synchronisation for them::

        with value_checks(False):
            y = manifold.retr(x, u)   # x is not checked to be on the set
    """
    token = _ENABLED.set(bool(enabled))
    try:
        yield
    finally:
        _ENABLED.reset(token)
