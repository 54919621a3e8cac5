"""The Cayley transform applied to an orthonormal frame, in ``O(np²)``, exactly or iteratively.

Both functions compute ``Y = Cayley(A) x = (I − A)⁻¹ (I + A) x`` for an orthonormal frame
``x`` (``n x p``, ``xᵀx = I``) and a skew ``n x n`` generator of rank ``≤ 2p`` that is never
formed,

    ``A = x Ω xᵀ + b xᵀ − x bᵀ``   (``Ω``: ``p x p``, ``b``: ``n x p``).

Every skew ``A`` with ``A x`` given takes this form on ``span[x, b]``; it covers the Cayley
retraction of Wen & Yin (2013, "A feasible method for optimization with orthogonality
constraints") and the first ``p`` columns of ``Cayley`` of a skew matrix whose nonzero
entries lie in its first ``p`` rows and columns (the Stiefel parametrization of mhckit).
"""

from __future__ import annotations

import torch

from mhckit.functional.polar import polar_refine

__all__ = ["cayley_frame", "iterative_cayley_frame"]


def _check(x: torch.Tensor, omega: torch.Tensor | None, b: torch.Tensor | None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a tensor of shape (..., n, p), got {type(x).__name__}"
                         f"{'' if not isinstance(x, torch.Tensor) else tuple(x.shape)}")
    n, p = x.shape[-2:]
    if p > n:
        raise ValueError(f"x must be a frame (..., n, p) with p <= n, got shape {tuple(x.shape)}")
    for name, t, trailing in (("omega", omega, (p, p)), ("b", b, (n, p))):
        if t is not None and (not isinstance(t, torch.Tensor) or t.dim() < 2
                              or tuple(t.shape[-2:]) != trailing):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must have trailing shape {trailing}, got {got}")


def _apply_generator(x, omega, b, v):
    """``A v = x (Ω xᵀv − bᵀv) + b xᵀv`` without forming ``A`` (``O(np²)``)."""
    xtv = x.mT @ v
    inner = torch.zeros_like(xtv) if omega is None else omega @ xtv
    if b is None:
        return x @ inner
    return x @ (inner - b.mT @ v) + b @ xtv


def cayley_frame(x: torch.Tensor, omega: torch.Tensor | None = None,
                 b: torch.Tensor | None = None) -> torch.Tensor:
    """Exact ``Y = Cayley(A) x`` for ``A = x Ω xᵀ + b xᵀ − x bᵀ`` (module docstring).

    Shapes: ``x`` ``(..., n, p)`` with orthonormal columns, ``omega`` ``(..., p, p)``,
    ``b`` ``(..., n, p)`` (``None`` means zero); batch dimensions broadcast. With
    ``K = xᵀb``, ``b⊥ = b − xK`` and ``Ω' = Ω + K − Kᵀ`` (so that ``A = xΩ'xᵀ + b⊥xᵀ − xb⊥ᵀ``),
    ``span[x, b⊥]`` is invariant under ``A`` and solving ``(I − A) Y = (I + A) x`` there gives

        ``Y = 2 (x + b⊥) M⁻¹ − x``,   ``M = I_p + b⊥ᵀ b⊥ − Ω'``,

    one ``p x p`` solve: ``O(np² + p³)`` instead of the ``O(n³)`` of a dense Cayley. For skew
    ``Ω`` the symmetric part of ``M`` is ``⪰ I``, so ``M`` is invertible and ``YᵀY = I``
    exactly. ``M``'s condition number grows like ``‖b‖²`` (the ``I`` is lost in float32 once
    ``‖b‖ ≳ 3·10³``), and a deviation ``xᵀx − I`` is amplified by ``‖b‖``; so the
    computation runs in float64 after one Newton–Schulz step on ``x``
    (:func:`mhckit.functional.polar_refine`), and the result is returned in ``x``'s dtype. A
    float64 result can still carry ``~1e-10`` orthogonality error at entries near ``1e4``,
    which a further Newton–Schulz step on ``Y`` removes.
    The solve stays a pivoted LU solve (``torch.linalg.solve``), not an explicit inverse:
    with ``cond(M) ~ ‖b‖²`` up to ``1e8`` an explicit ``M⁻¹`` (e.g.
    :func:`~mhckit.functional.small_inverse.small_inverse`) loses orthogonality to ``4e-5``
    in float32 at entries near ``1e4`` (measured; ``tests/test_cayley_frame.py``).
    Differentiable by autograd (the solve's backward solves the adjoint system); the
    derivative in ``x`` is the Cayley derivative only along directions keeping ``xᵀx = I``.
    """
    _check(x, omega, b)
    dtype = x.dtype
    x64 = polar_refine(x.double(), steps=1)
    eye = torch.eye(x.shape[-1], dtype=torch.float64, device=x.device)
    m = eye if omega is None else eye - omega.double()
    frame = x64
    if b is not None:
        b64 = b.double()
        k = x64.mT @ b64
        perp = b64 - x64 @ k
        m = m + perp.mT @ perp - (k - k.mT)
        frame = x64 + perp
    y = 2.0 * torch.linalg.solve(m, frame, left=False) - x64
    return y.to(dtype)


def _iterate(x, omega, b, iterations: int) -> torch.Tensor:
    y = x + 2.0 * _apply_generator(x, omega, b, x)
    for _ in range(iterations):
        y = x + _apply_generator(x, omega, b, x + y)
    return y


class _ImplicitIterativeCayley(torch.autograd.Function):
    """Forward: the fixed-point iterations; backward: the exact Cayley derivative."""

    @staticmethod
    def forward(ctx, x, omega, b, iterations):
        ctx.save_for_backward(x, omega, b)
        return _iterate(x, omega, b, iterations)

    @staticmethod
    def backward(ctx, grad):
        needs = ctx.needs_input_grad[:3]
        with torch.enable_grad():
            leaves = [None if t is None else t.detach().requires_grad_(need)
                      for t, need in zip(ctx.saved_tensors, needs, strict=True)]
            wanted = [t for t, need in zip(leaves, needs, strict=True) if need and t is not None]
            grads = iter(torch.autograd.grad(cayley_frame(*leaves), wanted, grad)
                         if wanted else ())
        return (*(next(grads) if need and t is not None else None
                  for t, need in zip(leaves, needs, strict=True)), None)


def iterative_cayley_frame(x: torch.Tensor, omega: torch.Tensor | None = None,
                           b: torch.Tensor | None = None, *, iterations: int = 2,
                           backward: str = "implicit") -> torch.Tensor:
    """``Cayley(A) x`` by the fixed-point iteration of Li, Fuxin & Todorovic (arXiv 2002.01113).

    ``Y⁰ = x + 2Ax``, then ``iterations`` times ``Yᵏ⁺¹ = x + A (x + Yᵏ)``: the fixed point
    solves ``(I − A) Y = (I + A) x``. Matrix products only (``O(np²)`` per step, no solve).
    The iteration contracts with rate ``‖A‖₂`` and converges only for ``‖A‖₂ < 1``; after
    ``k`` steps ``YᵀY − I = O(‖A‖₂^{2⌈k/2⌉+2})`` (measured), so the result is *not* exactly
    orthonormal (JPmHC, arXiv 2602.18308, uses two steps on small retraction steps; the
    error is tabulated in ``docs/manifolds/stiefel_grassmann.md``). Shapes as
    :func:`cayley_frame`.

    ``backward="implicit"`` (default) differentiates the fixed point, not the iterations:
    the backward is the exact Cayley derivative (the vector-Jacobian product of
    :func:`cayley_frame`, the adjoint of ``(I − A) Y = (I + A) x``) and keeps no
    per-iteration activations. ``backward="unrolled"`` runs plain autograd through the
    iterations; the two agree once the iteration has converged.
    """
    _check(x, omega, b)
    if isinstance(iterations, bool) or not isinstance(iterations, int):
        raise TypeError(f"iterations must be an int, got {type(iterations).__name__}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if backward == "implicit":
        return _ImplicitIterativeCayley.apply(x, omega, b, iterations)
    if backward == "unrolled":
        return _iterate(x, omega, b, iterations)
    raise ValueError(f"backward must be 'implicit' or 'unrolled', got {backward!r}")
