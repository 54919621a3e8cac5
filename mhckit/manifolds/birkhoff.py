"""The Birkhoff polytope of doubly stochastic matrices with the Fisher metric."""

from __future__ import annotations

import math

import torch

from mhckit.functional.birkhoff_tangent import birkhoff_tangent_projection
from mhckit.functional.multiplicative_step import multiplicative_max_step
from mhckit.functional.sinkhorn import check_sinkhorn_options, sinkhorn, sinkhorn_scale
from mhckit.functional.support_divisor import support_divisor
from mhckit.functional.value_checks import value_checks_enabled
from mhckit.manifolds.base import SquareManifold, check_tensor, default_atol

__all__ = ["Birkhoff"]


class Birkhoff(SquareManifold):
    """Doubly stochastic matrices ``{X ∈ R^{n×n} : X ≥ 0, X1 = 1, Xᵀ1 = 1}`` (the mHC set).

    Geometry of the interior (``X > 0``) as in Douik & Hassibi (arXiv 1802.02628):

    * metric: the Fisher information metric ``<U, V>_X = Σ U ⊙ V / X``;
    * tangent space ``{U : U1 = 0, Uᵀ1 = 0}``; ``proju`` is the orthogonal projection in that
      metric, ``U - X ⊙ (α1ᵀ + 1βᵀ)`` (:func:`~mhckit.functional.birkhoff_tangent_projection`),
      idempotent, and defined at permutation matrices;
    * ``egrad2rgrad(X, G) = proju(X, X ⊙ G)``, so ``<rgrad, V>_X = <G, V>`` for tangent ``V``
      (``X ⊙ G`` vanishes where ``X`` does, so the projection skips masking it; ``X >= 0``);
    * ``retr(X, U) = sinkhorn_scale(X ⊙ exp(U / X))`` (``= sinkhorn(log X + U / X)``), with
      ``U / X`` clipped to ``±step_clip``; ``max_step(X, U)`` the fraction of ``U`` it takes
      safely (:func:`~mhckit.functional.multiplicative_max_step`);
    * ``transp(X, Y, V) = proju(Y, V ⊙ Y / X)``: the retraction moves in the log-coordinates
      ``U / X``, so the transport keeps a vector's log-coordinates ``V / X`` and reads them
      at ``Y`` (then projects onto ``T_Y``). A momentum component therefore shrinks with the
      entry it pushes; a plain projection would keep its size and let ``V / Y`` blow up as
      the entry shrinks, driving momentum SGD into the boundary;
    * ``projx(X) = sinkhorn(log X)``: the KL (I-)projection ``argmin_P KL(P ‖ X)`` onto the
      set, which is *not* the Euclidean nearest point; entries ``<= 0`` count as ``√tiny``;
    * ``random``: ``sinkhorn(scale · G)`` for standard Gaussian logits ``G``;
    * ``parametrize(z) = sinkhorn(z)`` (mHC, arXiv 2512.24880), ``param_shape = (n, n)``;
      ``identity_param() = s·I`` with ``s`` such that the diagonal of ``sinkhorn(s·I)`` is
      ``identity_diagonal`` (0.95): near the identity, with gradients of order 0.05.

    Matrices on the boundary (entries ``= 0``, e.g. permutations) are accepted: tangent
    vectors vanish where ``X`` does, ``inner`` skips those entries, and ``retr`` keeps them
    0. The set is **inexact** (``exact = False``): a point made by Sinkhorn meets the
    constraints to ``tol`` when the iteration converged within ``max_iter`` rounds, not to
    rounding; when it stopped at ``max_iter`` first, only the column sums are exact (every
    sweep ends on the columns) and the row error is whatever was reached -- up to ``n − 1``
    for the ``mhc`` preset's 20 rounds at logits of ``1e4`` (e.g. three rows of ``1e4`` in one
    column). ``sinkhorn(z, return_info=True)`` reports that residual, and
    ``constraint_error(point)`` measures it.
    """

    name = "Birkhoff"
    exact = False
    identity_diagonal = 0.95
    step_clip = 10.0
    no_exact_maps = ("the Fisher metric's geodesics on the Birkhoff polytope have no closed "
                     "form (Douik & Hassibi, arXiv 1802.02628, use retractions)")

    def __init__(self, n: int, *, tol: float = 1e-6, max_iter: int = 100,
                 backward: str = "implicit") -> None:
        super().__init__(n)
        check_sinkhorn_options(tol, max_iter, backward)
        self.tol, self.max_iter, self.backward = float(tol), max_iter, backward

    def _tolerance(self, dtype: torch.dtype) -> float:
        """The Sinkhorn tolerance used for points of ``dtype``."""
        return self.tol

    def _sinkhorn(self, logits: torch.Tensor) -> torch.Tensor:
        return sinkhorn(logits, tol=self._tolerance(logits.dtype), max_iter=self.max_iter,
                        backward=self.backward)

    def _require_point(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """``x`` if it is a doubly stochastic ``(..., n, n)`` tensor (within a loose tolerance;
        the value check is skipped where :func:`value_checks_enabled` says so)."""
        check_tensor(x, name, trailing=self.shape)
        if not value_checks_enabled():
            return x
        limit = max(100 * self.tol, 1e-4, 10 * self._size * torch.finfo(x.dtype).eps)
        error = float(self.constraint_error(x).max()) if x.numel() else 0.0
        if error > limit:
            raise ValueError(f"{name} must be doubly stochastic (constraint error <= {limit:.1e}), "
                             f"got constraint error {error:.3e}")
        return x

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x", trailing=self.shape)
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        floor = math.sqrt(torch.finfo(work.dtype).tiny)
        return self._sinkhorn(work.clamp_min(floor).log()).to(x.dtype)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        self._require_point(x)
        check_tensor(u, "u", trailing=self.shape)
        return birkhoff_tangent_projection(x, u)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        self._require_point(x)
        check_tensor(u, "u", trailing=self.shape)
        return birkhoff_tangent_projection(x, x * u, on_support=True)  # x ⊙ u is 0 off it

    def ehess2rhess(self, x: torch.Tensor, egrad: torch.Tensor, ehess: torch.Tensor,
                    u: torch.Tensor) -> torch.Tensor:
        """``Π_X(D grad[U] − grad ⊙ U / 2X)`` (Douik & Hassibi, arXiv 1802.02628, Thm. 3):
        the Levi-Civita connection of the Fisher metric ``Σ U ⊙ V / X`` on the positive
        orthant has Christoffel form ``−U ⊙ V / 2X``, and the induced connection projects it.
        ``D grad[U]`` differentiates ``grad = Π_X(X ⊙ G)`` along ``(U, ehess)`` (forward
        mode through the projection). Interior points (``X > 0``)."""
        self._require_point(x)
        for value, name in ((egrad, "egrad"), (ehess, "ehess"), (u, "u")):
            check_tensor(value, name, trailing=self.shape)

        def rgrad(point: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            return birkhoff_tangent_projection(point, point * g, on_support=True)

        grad, dgrad = torch.func.jvp(rgrad, (x, egrad), (u, ehess))
        return birkhoff_tangent_projection(x, dgrad - grad * u / (2 * support_divisor(x)))

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        self._require_point(x)
        check_tensor(u, "u", trailing=self.shape)
        x, u = torch.broadcast_tensors(x, u)
        return self._retract(x, support_divisor(x), u)

    def _retract(self, x: torch.Tensor, divisor: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """:meth:`retr` of checked, broadcast ``x``, ``u``; ``divisor`` is
        ``support_divisor(x)``."""
        step = (u / divisor).clamp_(-self.step_clip, self.step_clip)
        start = x.clamp_min(0) * step.exp_()
        work = start if start.dtype in (torch.float32, torch.float64) else start.float()
        return sinkhorn_scale(work, tol=self._tolerance(work.dtype), max_iter=self.max_iter,
                              backward=self.backward).to(start.dtype)

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Transport ``v ∈ T_x`` to ``T_y``: ``proju(y, v ⊙ y / x)`` (0 where ``x = 0``).

        A vector transport: linear in ``v``, into ``T_y``, the identity on ``T_x`` when
        ``y = x``. It keeps the log-coordinates ``v / x`` in which :meth:`retr` moves."""
        check_tensor(x, "x", trailing=self.shape)
        check_tensor(v, "v", trailing=self.shape)
        return self._transport(y, v / support_divisor(x))

    def _transport(self, y: torch.Tensor, log_coordinates: torch.Tensor) -> torch.Tensor:
        """``proju(y, y ⊙ log_coordinates)``; the vector is 0 where ``y`` is."""
        self._require_point(y, "y")
        return birkhoff_tangent_projection(y, y * log_coordinates, on_support=True)

    def retr_transp(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(retr(x, u), transp(x, retr(x, u), v))``, sharing their work."""
        self._require_point(x)
        check_tensor(u, "u", trailing=self.shape)
        check_tensor(v, "v", trailing=self.shape)
        x, u = torch.broadcast_tensors(x, u)
        divisor = support_divisor(x)
        y = self._retract(x, divisor, u)
        return y, self._transport(y, v / divisor)

    def max_step(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Largest fraction ``t ∈ (0, 1]`` of ``u`` that :meth:`retr` takes from ``x`` without
        shrinking an entry by more than a factor ``e`` (or growing it by more than ``e²⁰``),
        per matrix, shape ``x.shape[:-2] + (1, 1)``; used by :mod:`mhckit.optim`."""
        return multiplicative_max_step(x, u)

    def inner(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor | None = None, *,
              keepdim: bool = False) -> torch.Tensor:
        """``Σ U ⊙ V / X`` over the last two dimensions, skipping entries where ``X = 0``."""
        v = u if v is None else v
        return (u * v / support_divisor(x)).sum(dim=(-2, -1), keepdim=keepdim)

    def random(self, *size, dtype=None, device=None, generator: torch.Generator | None = None,
               scale: float = 1.0) -> torch.Tensor:
        """``sinkhorn(scale · G)``, ``G`` i.i.d. standard Gaussian of shape ``size`` (default
        ``(n, n)``). ``scale → 0`` concentrates at ``11ᵀ/n``, large ``scale`` near permutations."""
        shape = self._sample_size(size, dtype)
        logits = torch.randn(*shape, dtype=dtype, device=device, generator=generator)
        return self._sinkhorn(scale * logits)

    def parametrize(self, z: torch.Tensor) -> torch.Tensor:
        """``sinkhorn(z)`` for logits ``z`` of shape ``(..., n, n)``; see :func:`sinkhorn`."""
        check_tensor(z, "z", trailing=self.param_shape)
        return self._sinkhorn(z)

    def identity_param(self, *, dtype: torch.dtype | None = None,
                       device: torch.device | str | None = None) -> torch.Tensor:
        n, d = self._size, self.identity_diagonal
        logit = math.log(d * (n - 1) / (1 - d)) if n > 1 else 0.0
        return logit * torch.eye(n, dtype=dtype, device=device)

    def constraint_error(self, x: torch.Tensor) -> torch.Tensor:
        """``max(|X1 - 1|, |Xᵀ1 - 1|, -min(X, 0))`` per matrix."""
        check_tensor(x, "x", trailing=self.shape)
        rows = (x.sum(-1) - 1).abs().amax(-1)
        cols = (x.sum(-2) - 1).abs().amax(-1)
        negative = (-x).clamp_min(0).amax((-2, -1))
        return torch.maximum(torch.maximum(rows, cols), negative)

    def _check_vector_on_tangent(self, x, u, *, atol=None, rtol=None):
        ok, reason = self._check_shape(u.shape, "u")
        if not ok:
            return ok, reason
        if not u.numel():
            return True, None
        scale = max(1.0, float(u.abs().max()))
        tol = scale * (10 * default_atol(u.dtype) if atol is None else atol)
        outside = torch.where(x > 0, torch.zeros_like(u), u).abs()
        error = max(float(u.sum(-1).abs().max()), float(u.sum(-2).abs().max()),
                    float(outside.max()))
        if error > tol:
            return False, f"row/column sums of u (or u where x = 0) reach {error:.3e} > {tol:.1e}"
        return True, None

    def extra_repr(self) -> str:
        return f"n={self._size}, tol={self.tol:g}, max_iter={self.max_iter}"
