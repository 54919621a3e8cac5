"""Inverses of many small matrices: unrolled Gauss–Jordan on a batch-last layout."""

from __future__ import annotations

import torch

__all__ = ["small_inverse", "inverse_values", "UNROLLED_MAX_SIZE"]

#: Largest ``k`` inverted by the unrolled elimination; beyond it a batched LU is efficient
#: (``O(k³)`` work per matrix against ``O(k)`` kernel launches) and is used instead.
UNROLLED_MAX_SIZE = 16


def _gauss_jordan(m: torch.Tensor) -> torch.Tensor:
    """``M⁻¹`` for ``m`` of shape ``(B, k, k)`` by Gauss–Jordan with partial pivoting.

    The work array ``[M | I]`` is laid out ``(k, 2k, B)``, batch last, so every step is a
    handful of element-wise operations over all matrices at once, on contiguous rows. Step
    ``j`` picks, per matrix, the row of largest ``|entry|`` in column ``j`` among the rows not
    yet used as pivots, divides it by the pivot and subtracts it from every other row; the
    eliminated column is dropped, so the array narrows by one column a step. Rows are never
    swapped: the row pivoting column ``j`` ends up holding row ``j`` of ``M⁻¹``, read out by
    one gather at the end.
    """
    batch, k = m.shape[0], m.shape[-1]
    work = m.new_empty(k, 2 * k, batch)
    work[:, :k] = m.permute(1, 2, 0)
    work[:, k:] = torch.eye(k, dtype=m.dtype, device=m.device).unsqueeze(-1)
    rows = torch.arange(k, device=m.device).unsqueeze(-1)
    free = m.new_ones(k, batch)  # 1 on rows not yet used as a pivot
    pivot_rows = []
    for _ in range(k):
        column, rest = work[:, 0], work[:, 1:]
        # max(...).indices, not argmax: the same index, several times faster on CPU
        pivot = (column.abs() * free).max(dim=0, keepdim=True).indices  # (1, B)
        chosen = (rows == pivot).to(m.dtype)  # (k, B), one-hot
        row = rest.gather(0, pivot.unsqueeze(1).expand(1, rest.shape[1], batch))
        row = row / column.gather(0, pivot).unsqueeze(1)
        # every row minus (its column entry) x the pivot row; the pivot row becomes `row`
        work = torch.addcmul(rest, (column - chosen).unsqueeze(1), row, value=-1.0)
        free = free - chosen
        pivot_rows.append(pivot)
    order = torch.cat(pivot_rows).unsqueeze(1).expand(k, k, batch)
    # batch first again, contiguous: batched matmuls on the permuted view copy per matrix
    return work.gather(0, order).permute(2, 0, 1).contiguous()


def inverse_values(m: torch.Tensor) -> torch.Tensor:
    """The values of :func:`small_inverse` (``m`` float32/float64, ``(..., k, k)``), not
    differentiable: for custom autograd functions that supply their own backward."""
    k = m.shape[-1]
    if k > UNROLLED_MAX_SIZE:
        return torch.linalg.inv_ex(m).inverse
    return _gauss_jordan(m.reshape(-1, k, k)).reshape(m.shape)


def inverse_vjp(inverse: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``∂L/∂M = −M⁻ᵀ (∂L/∂M⁻¹) M⁻ᵀ`` from ``inverse = M⁻¹`` and ``grad = ∂L/∂M⁻¹``
    (shapes ``(..., k, k)``): the backward of every function built on :func:`inverse_values`."""
    adjoint = inverse.mT
    return -(adjoint @ grad @ adjoint)


class _SmallInverse(torch.autograd.Function):
    """Forward: elimination (or LU); backward: ``∂L/∂M = −M⁻ᵀ (∂L/∂M⁻¹) M⁻ᵀ`` from the
    saved inverse alone, differentiable again (the saved inverse carries its graph)."""

    @staticmethod
    def forward(ctx, m):
        inverse = inverse_values(m)
        ctx.save_for_backward(inverse)
        return inverse

    @staticmethod
    def backward(ctx, grad):
        (inverse,) = ctx.saved_tensors
        return inverse_vjp(inverse, grad)


def small_inverse(m: torch.Tensor) -> torch.Tensor:
    """``M⁻¹`` for a batch of small square matrices ``m`` of shape ``(..., k, k)``.

    Batched LAPACK/cuSOLVER calls on tiny matrices are latency-bound (one call, pivot search
    and error check per matrix, a host synchronisation for the check on a GPU). For
    ``k ≤ UNROLLED_MAX_SIZE`` the inverse is instead Gauss–Jordan elimination with partial
    pivoting, unrolled over the ``k`` columns on a batch-last layout: ``O(k)`` element-wise
    operations over the whole batch, no host synchronisation, traceable by ``torch.compile``
    into one graph. Partial pivoting keeps it as accurate as LU (the same pivots; growth
    ``≤ 2^(k−1)``). Without pivoting it is not, even for ``M = I − A`` with ``A`` skew,
    whose leading minors never vanish: the pivots grow like ``‖A‖²`` (Golub & Van Loan,
    "Unsymmetric positive definite linear systems", 1979, bound the growth only by
    ``‖A‖``), and a float32 elimination at ``‖A‖ ≈ 10⁴`` returns ``NaN`` (measured).

    The backward is the derivative of the inverse, ``−M⁻ᵀ G M⁻ᵀ`` (two small products, from
    the saved output; no activations of the elimination are kept). Computed in ``m``'s
    dtype if float32/float64, else in float32 and returned in ``m``'s dtype. No check that
    ``m`` is invertible: a singular matrix gives ``inf``/``NaN`` entries.
    """
    if not isinstance(m, torch.Tensor):
        raise TypeError(f"m must be a torch.Tensor, got {type(m).__name__}")
    if m.dim() < 2 or m.shape[-1] != m.shape[-2]:
        raise ValueError(f"m must have shape (..., k, k), got {tuple(m.shape)}")
    if m.shape[-1] == 0 or m.numel() == 0:
        return m.clone()
    work = m if m.dtype in (torch.float32, torch.float64) else m.float()
    return _SmallInverse.apply(work).to(m.dtype)
