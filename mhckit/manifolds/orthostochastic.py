"""Generalized orthostochastic mixers (go-mHC, arXiv 2604.02309)."""

from __future__ import annotations

import torch

from mhckit.functional import block_energies, cayley
from mhckit.manifolds.base import check_size
from mhckit.manifolds.stiefel import Stiefel

__all__ = ["Orthostochastic"]


class Orthostochastic(Stiefel):
    r"""Mixers ``H_ij = ‖Q_ij‖_F² / s`` of an orthogonal ``Q ∈ O(ns)`` cut into ``s × s`` blocks.

    Every such ``H`` is doubly stochastic, exactly, for every ``s`` (each block row of ``Q``
    has ``s`` orthonormal rows): :func:`~mhckit.functional.block_energies.block_energies`.
    ``s = 1`` gives the orthostochastic matrices ``Q ⊙ Q``, a proper subset of the Birkhoff
    polytope for ``n ≥ 3``; growing ``s`` fills the polytope (go-mHC, Dandachi &
    Diggs-Galligan, arXiv 2604.02309). Cost ``O((ns)³)`` per matrix.

    **Points.** A point is ``Q`` itself, shape ``(ns, ns)``, and the mixer is
    ``as_matrix(Q) = block_energies(Q, s)``, shape ``(n, n)``; so this class *is* the
    orthogonal group ``Stiefel(ns, ns)`` (metric, ``proju``, ``egrad2rgrad``, retraction,
    ``random`` = Haar, ``constraint_error = max|QᵀQ − I|`` are inherited; options such as
    ``retraction=`` pass through) with a different read-out. ``self.n`` is the number of
    streams ``n``, not ``ns``.

    **Parametrization.** ``z`` holds the ``ns(ns−1)/2`` strict upper triangle of a skew
    ``A`` -- its free entries, the minimal count (a projection emitting all ``(ns)²``
    entries and keeping their skew part reaches the same set with twice the parameters) --
    so ``param_shape = (ns(ns−1)/2,)``, and ``Q = Q₀ · Cayley(A)`` around a fixed base
    ``Q₀ ∈ SO(ns)`` (a trivialization, Lezcano-Casado & Martínez-Rubio, arXiv 1901.08428).

    **Identity and its gradient.** ``I`` is a vertex of the Birkhoff polytope, so *no*
    smooth map onto the polytope has a nonzero derivative there (its image would have to
    contain ``±v``); at ``A = 0`` with ``Q₀ = I`` (the paper) ``∂H/∂A = 0``. The default
    ``init_mixing = 0.05`` therefore takes ``Q₀ = Cayley(ε K)``, ``K`` the skew matrix with
    ones above the diagonal, ``ε`` chosen so that ``identity_param() = 0`` maps to an ``H``
    with mean diagonal ``1 − init_mixing`` -- near the identity, with a first-order
    gradient. ``init_mixing = 0`` reproduces the paper (``Q₀ = I``, ``H = I`` exactly, no
    gradient at the start).
    """

    name = "Orthostochastic"

    def __init__(self, n: int, s: int = 1, *, init_mixing: float = 0.05, **options) -> None:
        check_size(n, "n")
        check_size(s, "s")
        if isinstance(init_mixing, bool) or not isinstance(init_mixing, (int, float)):
            raise TypeError(f"init_mixing must be a float, got {type(init_mixing).__name__}")
        super().__init__(n * s, n * s, **options)
        self._streams = n
        self.s = s
        self.init_mixing = float(init_mixing)
        self._base = self._find_base(self.init_mixing)
        self._bases: dict = {}

    @property
    def n(self) -> int:
        """Number of streams (the mixer is ``n × n``; a point ``Q`` is ``ns × ns``)."""
        return self._streams

    def _find_base(self, mixing: float) -> torch.Tensor | None:
        """``Q₀ = Cayley(εK)`` (float64) with ``1 − mean diag H(Q₀) = mixing``, by bisection.

        For ``n = 1`` the mixer is the constant ``[1]`` and no base is used."""
        if self._streams == 1:
            return None
        size = self._rows
        upper = torch.triu(torch.ones(size, size, dtype=torch.float64), diagonal=1)

        def moved(eps: float) -> tuple[float, torch.Tensor]:
            base = cayley(eps * (upper - upper.mT))
            return 1.0 - float(block_energies(base, self.s).diagonal().mean()), base

        largest = moved(1.0)[0]
        if not 0.0 <= mixing < largest:
            raise ValueError(f"init_mixing must be in [0, {largest:.3f}) for n={self._streams}, "
                             f"s={self.s}, got {mixing}")
        if mixing == 0.0:
            return None
        low, high = 0.0, 1.0
        for _ in range(60):
            mid = 0.5 * (low + high)
            low, high = (mid, high) if moved(mid)[0] < mixing else (low, mid)
        return moved(high)[1]

    def _frame(self, z: torch.Tensor) -> torch.Tensor:
        """``Q₀ · Cayley(A)`` in ``z``'s working dtype: one :func:`cayley` around the base,
        whose backward keeps only that point (which ``block_energies`` keeps anyway)."""
        if self._base is None:
            return super()._frame(z)
        key = (z.dtype, z.device)
        if key not in self._bases:
            self._bases[key] = self._base.to(dtype=z.dtype, device=z.device)
        if self.parametrization != "cayley":
            return self._bases[key] @ super()._frame(z)
        return cayley(self._generator(z)[0], self._bases[key], refine=True)

    def as_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """The doubly stochastic mixer ``block_energies(Q, s)``, shape ``(..., n, n)``."""
        return block_energies(x, self.s)

    def extra_repr(self) -> str:
        return (f"n={self._streams}, s={self.s}, init_mixing={self.init_mixing}, "
                f"retraction={self.retraction!r}")
