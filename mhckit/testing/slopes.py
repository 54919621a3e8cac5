"""Log-log slope fitting shared by the Taylor checks (Manopt's ``checkgradient`` style).

An error that is ``O(t^k)`` has slope ``k`` on a log-log plot. Errors under the rounding
floor ``noise`` are ignored; the slope is fitted on the ``WINDOW`` smallest consecutive
steps above ``10·noise`` (at least three); with nothing to fit, the smallest three quarters
of the steps must be under the floor (an agreement exact to rounding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import geoopt
import torch

__all__ = ["STEPS", "WINDOW", "fit_slope", "slope_ok", "eps", "inexact_tol"]

STEPS = tuple(10.0 ** (k / 2) for k in range(-16, 1))  # 1e-8 … 1, half decades
WINDOW = 5


def eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


def inexact_tol(manifold: geoopt.Manifold) -> float:
    """The stopping tolerance of an inexact set (Sinkhorn's), 0 for exact ones."""
    return 0.0 if getattr(manifold, "exact", True) else float(getattr(manifold, "tol", 0.0))


def fit_slope(steps: Sequence[float], errors: Sequence[float], noise: float) -> float:
    """Least-squares log-log slope over the first run of at least three (at most ``WINDOW``)
    consecutive steps above ``10·noise`` (an isolated rounding spike is skipped); NaN if
    there is no such run."""
    usable = [i for i, e in enumerate(errors) if math.isfinite(e) and e > 10 * noise]
    run: list[int] = []
    for i in usable:
        if run and i != run[-1] + 1:
            if len(run) >= 3:
                break
            run = []
        run.append(i)
        if len(run) == WINDOW:
            break
    if len(run) < 3:
        return math.nan
    xs = [math.log10(steps[i]) for i in run]
    ys = [math.log10(errors[i]) for i in run]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return (sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True))
            / sum((a - mx) ** 2 for a in xs))


def slope_ok(slope: float, errors: Sequence[float], noise: float, minimum: float) -> bool:
    """``slope >= minimum``, or (nothing to fit) the small steps exact to rounding."""
    if math.isnan(slope):
        small = errors[: max(1, 3 * len(errors) // 4)]
        return all(math.isfinite(e) and e <= 10 * noise for e in small)
    return slope >= minimum
