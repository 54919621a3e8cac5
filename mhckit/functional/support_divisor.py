"""Division restricted to the support of a nonnegative matrix."""

from __future__ import annotations

import math

import torch

__all__ = ["support_divisor"]


def support_divisor(x: torch.Tensor) -> torch.Tensor:
    """``x`` with its non-positive entries replaced by ``inf``.

    A finite tensor divided by it is ``u / x`` on the support of ``x`` and exactly 0 off it
    (where tangent vectors of the Birkhoff polytope vanish), with no NaN: the log-coordinates
    ``U / X`` of the multiplicative retraction, the Fisher inner product ``Σ U ⊙ V / X`` and
    the chain rule through ``L = log A`` all divide this way.
    """
    return torch.where(x > 0, x, math.inf)
