"""Newton–Schulz refinement of a nearly orthogonal matrix towards its orthogonal polar factor."""

from __future__ import annotations

import torch

from mhckit.functional.autocast import without_autocast

__all__ = ["polar_refine"]


@without_autocast
def polar_refine(q: torch.Tensor, steps: int = 2) -> torch.Tensor:
    """Refine a nearly orthogonal ``q`` (shape ``(..., m, m)``) towards its polar factor.

    Each step is the Newton–Schulz iteration ``Q ← Q (3I − QᵀQ) / 2``; if ``‖QᵀQ − I‖ = δ < 1``
    one step leaves ``O(δ²)``, so two steps take the ``δ ≈ 1e-3`` that a float32 Cayley solve
    of a skew matrix with entries near ``1e4`` leaves (condition number ``~1e4``) down to
    rounding. At an exactly orthogonal ``Q`` the step is the identity map and its derivative
    is the projection onto the tangent space of ``O(m)``, so tangent gradients pass unchanged.
    Differentiable by plain autograd (matrix products only).
    """
    eye = torch.eye(q.shape[-1], dtype=q.dtype, device=q.device)
    for _ in range(steps):
        q = q @ (1.5 * eye - 0.5 * (q.mT @ q))
    return q
