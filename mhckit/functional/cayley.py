"""The Cayley map from skew-symmetric matrices to the special orthogonal group."""

from __future__ import annotations

import torch

from mhckit.functional.autocast import without_autocast
from mhckit.functional.polar import polar_refine
from mhckit.functional.small_inverse import inverse_values, inverse_vjp
from mhckit.functional.validation import check_tensor

__all__ = ["skew", "cayley", "cayley_values", "cayley_vjp"]


def skew(a: torch.Tensor) -> torch.Tensor:
    """Skew-symmetric part ``(A - Aᵀ) / 2`` of ``a`` of shape ``(..., m, m)``."""
    return 0.5 * (a - a.transpose(-1, -2))


def _cayley_closed_form(a: torch.Tensor) -> torch.Tensor:
    """``Q = I + 2 (A + A²) / (1 + p)``, ``p = ‖A‖_F² / 2``, for skew ``A`` with ``m ≤ 3``.

    For ``m ≤ 3`` the characteristic polynomial of a skew ``A`` is ``λ^{m-2}(λ² + p)``, so
    ``A³ = −pA`` and ``(I − A)(I + (A + A²)/(1 + p)) = I``: the Euler–Rodrigues form of
    Cayley (Gibbs vector ``v`` with ``A = [v]×``: ``Q = ((1 − |v|²) I + 2[v]× + 2vvᵀ) /
    (1 + |v|²)``). Every term is a ratio of like powers of ``‖A‖``, so nothing cancels.
    Computed on ``A / t``, ``t = max(1, max|A|)``, so that ``p`` cannot overflow.
    """
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    t = a.detach().abs().amax(dim=(-2, -1), keepdim=True).clamp(min=1.0)
    scaled = a / t
    p = 0.5 * scaled.square().sum(dim=(-2, -1), keepdim=True)
    return eye + 2.0 * (scaled / t + scaled @ scaled) / (t.reciprocal().square() + p)


def cayley_values(a: torch.Tensor, refine: bool) -> torch.Tensor:
    """The values of :func:`cayley` (no base; not differentiable: for custom autograd
    functions, with :func:`cayley_vjp` as their backward): the closed form for ``m ≤ 3``,
    else ``2 (I − A)⁻¹ − I`` by :func:`inverse_values`, optionally refined by Newton–Schulz."""
    if a.shape[-1] <= 3:
        return _cayley_closed_form(a)
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    q = 2.0 * inverse_values(eye - a) - eye
    return polar_refine(q) if refine else q


def cayley_vjp(q: torch.Tensor, grad: torch.Tensor, base: torch.Tensor | None = None
               ) -> torch.Tensor:
    """``∂L/∂A`` of ``q = B · Cayley(A)`` from ``q`` itself and ``grad = ∂L/∂q``.

    ``dCayley(A) = 2 X dA X`` with ``X = (I − A)⁻¹ = (Cayley(A) + I)/2``, so without a base
    ``∂L/∂A = 2 Xᵀ G Xᵀ``. With an orthogonal base ``B`` (``BᵀB = BBᵀ = I``),
    ``Cayley(A) = Bᵀq`` and ``∂L/∂Cayley(A) = BᵀG``, and ``Xᵀ = (q + B)ᵀ B / 2`` gives
    ``∂L/∂A = 2 Yᵀ G Yᵀ B`` with ``Y = (q + B)/2``: three small products either way, and
    nothing but ``q`` needs keeping (``B`` is a constant)."""
    shift = torch.eye(q.shape[-1], dtype=q.dtype, device=q.device) if base is None else base
    # Q = 2X − I with X = M⁻¹, M = I − A: ∂L/∂A = −∂L/∂M = −inverse_vjp(X, 2G)
    grad_a = -inverse_vjp(0.5 * (q + shift), 2.0 * grad)
    return grad_a if base is None else grad_a @ base


class _Cayley(torch.autograd.Function):
    """Forward: ``B · Cayley(A)`` (:func:`cayley_values`; ``B = I`` without a base);
    backward: the exact Cayley derivative from the saved output alone
    (:func:`cayley_vjp`), so the only tensor kept is the one the caller holds anyway. The
    refinement moves ``Q`` by rounding only and its derivative along the skew directions is
    the identity, so it is not differentiated (that would cost four more small products a
    step); the closed form is ``Cayley(A)`` exactly, so its derivative is the same. The
    backward is differentiable again (the saved output carries its graph)."""

    @staticmethod
    def forward(ctx, a, base, refine):
        # ctx-style, not setup_context: that style binds the signature on every call (~25 µs)
        q = cayley_values(a, refine)
        q = q if base is None else base @ q
        ctx.base = base
        ctx.save_for_backward(q)
        return q

    @staticmethod
    def backward(ctx, grad):
        (q,) = ctx.saved_tensors
        return cayley_vjp(q, grad, ctx.base), None, None


@without_autocast
def cayley(a: torch.Tensor, base: torch.Tensor | None = None, *,
           refine: bool = False) -> torch.Tensor:
    """Cayley map ``Q = (I - A)^{-1} (I + A) = 2 (I - A)^{-1} - I`` of a skew ``A``
    (shape ``(..., m, m)``; skewness is assumed, not checked).

    ``Q`` is orthogonal with ``det Q = 1`` and no eigenvalue ``-1``; ``I - A`` is always
    invertible because the eigenvalues of a skew matrix are imaginary. Both ways of computing
    it are exact, with no linear solver call per matrix: for ``m ≤ 3`` the closed form
    ``I + 2 (A + A²) / (1 + ‖A‖_F²/2)`` (Euler–Rodrigues), else ``2 (I − A)⁻¹ − I`` by
    :func:`~mhckit.functional.small_inverse.small_inverse`'s unrolled Gauss–Jordan with
    partial pivoting. Both are differentiated by the exact Cayley derivative
    ``∂L/∂A = 2 Xᵀ G Xᵀ``, ``X = (I − A)⁻¹ = (Q + I)/2`` (:func:`cayley_vjp`: a custom
    backward of two small products that keeps only the output). The closed form is
    orthogonal to rounding
    for any entries; the inverse to rounding times the condition of ``I − A``
    (``≤ 1 + ‖A‖₂``, so ``~1e-3`` in float32 at entries near ``1e4``), and ``refine=True``
    adds two Newton–Schulz steps (:func:`~mhckit.functional.polar_refine`) there, which take
    it to rounding; the closed form needs none. Computed in at least float32 and returned in
    the input dtype.

    With ``base`` (an orthogonal ``(..., m, m)`` matrix) the map is the trivialization
    ``base @ Q`` around ``base`` (Lezcano-Casado & Martínez-Rubio 2019, arXiv 1901.08428).
    A constant base is part of the custom function, whose backward then reads ``Q`` off
    the one saved output ``base @ Q`` (one ``m x m`` matrix kept per point, not two); a
    base that requires a gradient is multiplied by autograd.

    Used by Stiefel/Grassmann (JPmHC, arXiv 2602.18308), go-mHC (arXiv 2604.02309) and sHC
    (arXiv 2603.20896).
    """
    check_tensor(a, "a", finite=False)
    dtype = a.dtype
    work = a if dtype in (torch.float32, torch.float64) else a.float()
    if base is not None and base.requires_grad:
        return (base.to(work.dtype) @ _Cayley.apply(work, None, bool(refine))).to(dtype)
    q = _Cayley.apply(work, None if base is None else base.to(work.dtype), bool(refine))
    return q.to(dtype)
