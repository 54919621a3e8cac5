"""Fisher-metric projection onto the tangent space of the Birkhoff polytope."""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["birkhoff_tangent_projection", "solve_scaling_system"]

# Tikhonov shift of the gauge-fixed Schur complement, above its rounding error: it keeps the
# Cholesky factorization defined where the support of ``x`` splits into several blocks (the
# identity, a permutation); two steps of iterative refinement remove its bias, (δ/λ)³
# relative, elsewhere.
def _shift(n: int, dtype: torch.dtype) -> float:
    return max(1e-10, 10 * n * torch.finfo(dtype).eps)


_TINY = {dtype: torch.finfo(dtype).tiny for dtype in (torch.float32, torch.float64)}


@functools.cache
def _constants(n: int, dtype: torch.dtype, device: torch.device
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(11ᵀ/n + δI, I)`` (``n × n``): the rank-one gauge fix plus the shift, and the
    identity, made once."""
    eye = torch.eye(n, dtype=dtype, device=device)
    return torch.full((n, n), 1.0 / n, dtype=dtype, device=device) + _shift(n, dtype) * eye, eye


def _working_dtype(dtype: torch.dtype) -> torch.dtype:
    """``promote_types(dtype, float32)`` without a dispatched call for the common dtypes."""
    if dtype is torch.float32 or dtype is torch.float64:
        return dtype
    return torch.promote_types(dtype, torch.float32)


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t.to(dtype)``, skipping the call when it would return ``t`` (the 4 × 4 solves pay
    for every call)."""
    return t if t.dtype == dtype else t.to(dtype)


def _flat(t: torch.Tensor, batch: torch.Size, size: int, tail: tuple[int, ...]) -> torch.Tensor:
    """``t`` broadcast to ``batch + tail`` and flattened to ``(size, *tail)`` (a view when
    ``t`` already has that batch)."""
    if t.shape[:-len(tail)] != batch:
        t = t.expand(*batch, *tail)
    return t.reshape(size, *tail)


def solve_scaling_system(x: torch.Tensor, row_rhs: torch.Tensor, col_rhs: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """One solution ``(α, β)`` of ``D_r α + Xβ = row_rhs``, ``Xᵀα + D_c β = col_rhs``.

    ``x`` is nonnegative ``(..., n, n)`` with row sums ``r = X1`` and column sums ``c = Xᵀ1``;
    ``row_rhs``, ``col_rhs`` are ``(..., n)``. This is the system of the normal space of the
    Birkhoff polytope (:func:`birkhoff_tangent_projection`) and the Newton system of the
    Sinkhorn dual (``mhckit.functional.sinkhorn``). The matrix is singular (``α + t1``,
    ``β - t1``), so ``α = D_r⁻¹(row_rhs - Xβ)`` is eliminated and the Schur complement
    ``S = D_c - Xᵀ D_r⁻¹ X`` (one zero eigenvalue per connected block of the support of ``X``)
    is solved as ``(S + 11ᵀ/n + δI) β = col_rhs - Xᵀ D_r⁻¹ row_rhs`` through the inverse of
    its Cholesky factor, with two steps of iterative refinement, in ``x``'s precision (at
    least float32; ``δ`` is above the rounding of ``S`` in that precision). Differentiable;
    returns ``(α, β)`` in that precision. A non-finite ``x`` gives non-finite output rather
    than an exception.
    """
    work = _working_dtype(x.dtype)
    n = x.shape[-1]
    batch = x.shape[:-2]
    if row_rhs.shape[:-1] != batch or col_rhs.shape[:-1] != batch:
        batch = torch.broadcast_shapes(batch, row_rhs.shape[:-1], col_rhs.shape[:-1])
    # One flat batch, so every product is a single ``bmm``/``baddbmm``, and the solves are
    # products with the inverse: the solve costs per operation, not per number (4 × 4
    # batches), so it is written in few.
    size = math.prod(batch)
    x = _flat(_as(x, work), batch, size, (n, n))
    row_rhs = _flat(_as(row_rhs, work), batch, size, (n,)).unsqueeze(-1)
    col_rhs = _flat(_as(col_rhs, work), batch, size, (n,)).unsqueeze(-1)
    rows = x.sum(-1, keepdim=True).clamp_min(_TINY[work])  # (size, n, 1)
    # rhs = col_rhs - Xᵀ D_r⁻¹ row_rhs, and S = D_c - Xᵀ D_r⁻¹ X; the inverse is of the
    # gauge-fixed S + 11ᵀ/n + δI (SPD: through its Cholesky factor).
    scaled_t = (x / rows).transpose(-1, -2)  # (D_r⁻¹ X)ᵀ
    rhs = torch.baddbmm(col_rhs, scaled_t, row_rhs, alpha=-1)
    schur = torch.baddbmm(torch.diag_embed(x.sum(-2)), scaled_t, x, alpha=-1)
    gauge, eye = _constants(n, work, x.device)
    # (LLᵀ)⁻¹ = L⁻ᵀL⁻¹ with L⁻¹ by one triangular solve: cheaper than cholesky_inverse
    root = torch.linalg.solve_triangular(torch.linalg.cholesky_ex(schur + gauge).L, eye,
                                         upper=False)
    inverse = torch.bmm(root.transpose(-1, -2), root)
    beta = torch.bmm(inverse, rhs)
    for _ in range(2):  # refine against S itself: the residual rhs - Sβ
        beta = torch.baddbmm(beta, inverse, torch.baddbmm(rhs, schur, beta, alpha=-1))
    alpha = torch.baddbmm(row_rhs, x, beta, alpha=-1) / rows
    return alpha.reshape(*batch, n), beta.reshape(*batch, n)


def birkhoff_tangent_projection(x: torch.Tensor, u: torch.Tensor, *,
                                on_support: bool = False) -> torch.Tensor:
    """Project ``u`` onto ``{V : V1 = 0, Vᵀ1 = 0}``, orthogonally in ``<U, V>_X = Σ U⊙V / X``.

    ``x`` is a (nearly) doubly stochastic matrix, ``u`` any matrix; both ``(..., n, n)`` and
    broadcast against each other. The normal space at ``X`` of the Fisher (information)
    metric is ``{X ⊙ (α1ᵀ + 1βᵀ)}``, so the projection is

        Π_X(U) = U - X ⊙ (α1ᵀ + 1βᵀ),   [D_r  X ] [α]   [U 1 ]
                                        [Xᵀ  D_c] [β] = [Uᵀ1],

    with ``r = X1``, ``c = Xᵀ1`` (both 1 on the set; using the actual sums makes the result's
    row and column sums vanish even for a point within Sinkhorn tolerance). The system is
    singular; :func:`solve_scaling_system` fixes its gauge (Schur complement with a rank-one
    fix and a tiny shift), so the projection is defined at the identity and at permutation
    matrices, where the tangent space is ``{0}``.

    Entries where ``x = 0`` are outside the face ``x`` lies on: ``u`` is zeroed there, so
    tangent vectors vanish wherever ``x`` does and nothing divides by zero; negative entries
    of ``x`` count as 0. ``on_support=True`` skips both (two tensor operations each) for a
    caller that guarantees them: ``x >= 0`` and ``u = 0`` where ``x = 0``, as for
    ``X ⊙ G`` at a point ``X`` made by Sinkhorn.

    Used as ``Birkhoff.proju`` (``egrad2rgrad(X, G) = Π_X(X ⊙ G)``) and as the implicit
    backward of :func:`mhckit.functional.sinkhorn`, whose Jacobian is ``dL ↦ Π_P(P ⊙ dL)``
    (Douik & Hassibi, arXiv 1802.02628; implicit Sinkhorn differentiation: Eisenberger et al.,
    CVPR 2022). Differentiable; returns ``promote_types(x.dtype, u.dtype)``.
    """
    dtype = x.dtype if x.dtype is u.dtype else torch.promote_types(x.dtype, u.dtype)
    work = _working_dtype(dtype)
    x, u = _as(x, work), _as(u, work)
    if x.shape != u.shape:
        x, u = torch.broadcast_tensors(x, u)
    if not on_support:
        x = x.clamp_min(0.0)
        u = torch.where(x > 0, u, 0.0)
    alpha, beta = solve_scaling_system(x, u.sum(-1), u.sum(-2))
    return _as(torch.addcmul(u, x, alpha.unsqueeze(-1) + beta.unsqueeze(-2), value=-1), dtype)
