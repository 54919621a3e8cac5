"""Step-size safeguard of the multiplicative retraction of the Birkhoff polytope."""

from __future__ import annotations

import torch

from mhckit.functional.support_divisor import support_divisor

__all__ = ["multiplicative_max_step"]


def multiplicative_max_step(x: torch.Tensor, u: torch.Tensor, *, shrink: float = 1.0,
                            grow: float = 20.0) -> torch.Tensor:
    """Safeguard of the multiplicative retraction ``retr_x(u) = P(x ⊙ exp(u / x))``.

    Returns ``t = min(1, shrink / max(-u/x), grow / max(u/x))`` per matrix, shape
    ``x.shape[:-2] + (1, 1)`` (``x``, ``u`` broadcast, ``(..., n, n)``): after scaling
    ``u`` by ``t`` no entry shrinks by more than a factor ``e^shrink`` nor grows by more than
    ``e^grow`` before the Sinkhorn projection ``P``. Without it a long momentum step drives
    entries of a doubly stochastic matrix to exact zeros (``exp`` underflows), where the
    multiplicative update can never move them again (the retraction is Douik & Hassibi's,
    arXiv 1802.02628). Entries where ``x = 0`` are ignored (tangent vectors vanish there);
    a step that is already safe gets exactly ``t = 1``. Reads nothing back to the host.
    """
    ratio = u / support_divisor(x)  # u / x, and 0 where x <= 0
    # t = 1 / max(1, -min(ratio) / shrink, max(ratio) / grow): exactly 1 for a safe step
    worst = torch.maximum(ratio * (-1.0 / shrink), ratio * (1.0 / grow))
    return worst.amax(dim=(-2, -1), keepdim=True).clamp_min_(1.0).reciprocal_()
