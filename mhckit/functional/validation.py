"""Argument checks shared by every layer of mhckit: one place that decides what a bad argument
gets (DESIGN.md, "Trust"): a ``TypeError`` for the wrong kind of value, a ``ValueError`` for a
value out of range, each naming the argument, what was expected and what came.

The checks follow ``torch.optim``'s (a learning rate of NaN or ``-1`` is a ``ValueError``)
and are stricter where Python is lax: ``True`` is not an int here, and ``"no"`` is not a
boolean. Checks that read tensor values back to the host (NaN/inf entries, magnitudes) are
skipped where :func:`~mhckit.functional.value_checks_enabled` says so; type, dtype and shape
checks always run.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import TypeVar

import torch

from mhckit.functional.value_checks import value_checks_enabled

__all__ = ["check_tensor", "check_dtype", "check_size", "check_bool", "check_float",
           "check_choice"]

T = TypeVar("T")


def _dtype_kind_error(what: str, dtype: torch.dtype, *, complex_ok: bool) -> TypeError | None:
    if dtype.is_complex and not complex_ok:
        return TypeError(f"{what} a real floating dtype (complex is not supported), got {dtype}")
    if not (dtype.is_floating_point or dtype.is_complex):
        return TypeError(f"{what} a floating dtype, got {dtype}")
    return None


def check_tensor(x: object, name: str, *, trailing: tuple[int, ...] | None = None,
                 finite: bool = True, bound: float | None = None,
                 complex_ok: bool = False) -> torch.Tensor:
    """Validate a tensor argument and return it.

    * ``TypeError`` unless ``x`` is a tensor of a floating dtype (complex only with
      ``complex_ok``: a real map would drop the imaginary part);
    * ``ValueError`` if its trailing dimensions differ from ``trailing``;
    * with ``finite``, ``ValueError`` if it holds NaN/inf; with ``bound``, if an entry
      exceeds ``bound`` in magnitude (one value read back serves both checks).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    error = _dtype_kind_error(f"{name} must have", x.dtype, complex_ok=complex_ok)
    if error is not None:
        raise error
    if trailing is not None:
        k = len(trailing)
        if x.dim() < k or tuple(x.shape[x.dim() - k:]) != tuple(trailing):
            raise ValueError(
                f"{name} must have trailing shape {tuple(trailing)}, got shape {tuple(x.shape)}"
            )
    if (finite or bound is not None) and x.numel() and value_checks_enabled():
        largest = float(x.detach().abs().amax())
        if finite and not math.isfinite(largest):
            raise ValueError(f"{name} must be finite, got NaN or inf entries")
        if bound is not None and largest > bound:
            raise ValueError(f"{name} must have entries of magnitude <= {bound:g}, "
                             f"got {largest:.3g}")
    return x


def check_dtype(dtype: object, name: str = "dtype") -> torch.dtype | None:
    """A ``dtype`` argument of a sampler: ``None`` (the default dtype) or a real floating
    ``torch.dtype``."""
    if dtype is None:
        return None
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"{name} must be a torch.dtype or None, got {type(dtype).__name__}")
    error = _dtype_kind_error(f"{name} must be", dtype, complex_ok=False)
    if error is not None:
        raise error
    return dtype


def check_size(value: object, name: str, *, minimum: int = 1) -> int:
    """Validate an integer size argument (``n``, ``p``, ``s``...): an ``int`` (not a bool)
    ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_bool(value: object, name: str) -> bool:
    """A flag: exactly ``True`` or ``False`` (``"no"`` and ``1`` are refused, as a string
    would otherwise count as true)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def check_float(value: object, name: str, *, low: float | None = None,
                high: float | None = None, low_open: bool = False,
                high_open: bool = False) -> float:
    """A finite real number (int or float, not bool) in the interval ``low .. high``
    (closed unless ``low_open`` / ``high_open``); returns it as a ``float``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__} {value!r}")
    value = float(value)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or below or above:
        if low is not None and high is not None:
            bounds = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            bounds = f" {'>' if low_open else '>='} {low:g}"
        elif high is not None:
            bounds = f" {'<' if high_open else '<='} {high:g}"
        else:
            bounds = ""
        raise ValueError(f"{name} must be a finite number{bounds}, got {value!r}")
    return value


def check_choice(value: T, name: str, choices: Collection[T]) -> T:
    """One of ``choices`` (``ValueError`` listing them otherwise)."""
    if not isinstance(value, str | int | float | type(None)) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}, got {value!r}")
    return value
