"""Convex combinations of all permutation matrices (mHC-lite, arXiv 2601.05732)."""

from __future__ import annotations

import itertools
import math

import torch

from mhckit.manifolds.base import check_size, check_tensor, default_atol
from mhckit.manifolds.birkhoff import Birkhoff

__all__ = ["PermutationHull"]

# 8! = 40320 logits per token is the largest size that is still usable.
MAX_SIZE = 8


class PermutationHull(Birkhoff):
    r"""The Birkhoff polytope reached exactly through its vertices: ``H = Σ_k softmax(z)_k P_k``.

    ``P_1 … P_{n!}`` are all ``n × n`` permutation matrices (lexicographic order, ``P_1 = I``);
    by Birkhoff–von Neumann their convex hull is the set of doubly stochastic matrices, and
    every ``H`` this map returns is doubly stochastic to rounding -- no Sinkhorn iteration
    (Yang & Gao, "mHC-lite", arXiv 2601.05732). ``param_shape = (n!,)``.

    The sum is a gather, not ``n!`` dense matrices: ``H_ij = Σ_{k : π_k(i) = j} w_k`` and
    exactly ``(n−1)!`` permutations send ``i`` to ``j``, so with their indices cached as an
    ``(n, n, (n−1)!)`` tensor per device, ``H = w[..., index].sum(-1)`` -- ``n·n!`` additions,
    no scatter (``index_add`` miscompiles under ``torch.compile`` on CPU in torch 2.13).
    Computed in at least float32, returned in ``z``'s dtype. ``n > 8`` is refused (``9!``
    logits per token); use :class:`Kronecker` or ``Orthostochastic`` there.

    **Identity.** :meth:`identity_param` puts logit 0 on ``P_1 = I`` and ``−gap`` on the rest.
    The reference code of mHC-lite and KromHC uses ``gap = 8``, which gives the identity a
    weight ``1/(1 + (n!−1)e^{−8})``: 0.99966 at ``n = 2``, 0.992 at ``n = 4`` but 0.069 at
    ``n = 8``. By default (``identity_gap=None``) the gap is ``log(99·(n!−1))`` so the weight
    is 0.99 at every ``n``; pass ``identity_gap=8.0`` for the reference behaviour.

    **Riemannian mode** is that of :class:`Birkhoff` (the image is the whole polytope): same
    Fisher metric, tangent projection, retraction. Only the Sinkhorn tolerance differs: this
    is an exact set, so ``projx``/``retr`` run Sinkhorn to ``min(tol, default_atol/10)``
    for the dtype (``1e-13`` in float64, ``1e-6`` in float32; Newton steps make that a few
    extra iterations). :meth:`random` draws ``parametrize(z)`` with standard Gaussian ``z``.

    Parameter count at ``n = 4`` (whole sublayer, ``n·C·(n! + 2n)``): ``128C``.
    """

    name = "PermutationHull"
    exact = True

    def __init__(self, n: int, *, identity_gap: float | None = None) -> None:
        check_size(n, "n")
        if n > MAX_SIZE:
            count = math.factorial(n)
            raise ValueError(
                f"PermutationHull(n) supports n <= {MAX_SIZE}, got n = {n}: it would need "
                f"{n}! = {count:,} logits per token ({count * 4 / 2**20:,.1f} MiB per token in "
                f"float32) and a per-token projection of n·n!·C weights "
                f"({n * count * 1024 * 4 / 2**30:,.1f} GiB at C = 1024). Use "
                f"Kronecker.of_size({n}) or Orthostochastic({n}) instead"
            )
        super().__init__(n)
        if identity_gap is not None:
            if isinstance(identity_gap, bool) or not isinstance(identity_gap, (int, float)):
                raise TypeError(f"identity_gap must be a float or None, "
                                f"got {type(identity_gap).__name__}")
            if not 0.0 < identity_gap < math.inf:
                raise ValueError(f"identity_gap must be finite and > 0, got {identity_gap}")
        self.identity_gap = identity_gap
        self._permutations: dict = {}

    @property
    def param_shape(self) -> tuple[int]:
        return (math.factorial(self.n),)

    def permutations(self, device: torch.device | str | None = None) -> torch.Tensor:
        """All permutations as an ``(n!, n)`` long tensor, row ``k`` = ``(π_k(0), …)``."""
        table = torch.tensor(list(itertools.permutations(range(self.n))), dtype=torch.long)
        return table.to(device)

    def vertex_index(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``(n, n, (n−1)!)`` long tensor: entry ``[i, j]`` lists the ``k`` with ``π_k(i) = j``.

        Cached per device; a stable sort of each column of :meth:`permutations` by value.
        """
        key = torch.device(device) if device is not None else torch.device("cpu")
        if key not in self._permutations:
            by_target = torch.argsort(self.permutations().T, dim=-1, stable=True)
            index = by_target.reshape(self.n, self.n, math.factorial(self.n - 1))
            self._permutations[key] = index.to(key)
        return self._permutations[key]

    def _tolerance(self, dtype: torch.dtype) -> float:
        """Birkhoff's Sinkhorn tolerance, tightened to the exact-set tolerance of ``dtype``."""
        return min(self.tol, default_atol(dtype) / 10)

    def random(self, *size, dtype=None, device=None) -> torch.Tensor:
        """``parametrize(z)`` with ``z`` standard Gaussian: interior points, exact marginals."""
        size = self._sample_size(size, dtype)
        return self.parametrize(
            torch.randn(*size[:-2], *self.param_shape, dtype=dtype, device=device))

    def parametrize(self, z: torch.Tensor) -> torch.Tensor:
        """``Σ_k softmax(z)_k P_k`` for ``z`` of shape ``(..., n!)``; shape ``(..., n, n)``."""
        z = check_tensor(z, "z", trailing=self.param_shape)
        work = z if z.dtype in (torch.float32, torch.float64) else z.float()
        weights = torch.softmax(work, dim=-1)
        return weights[..., self.vertex_index(z.device)].sum(-1).to(z.dtype)

    def identity_param(self, *, dtype=None, device=None) -> torch.Tensor:
        """Logit 0 on the identity, ``−gap`` elsewhere (class docstring)."""
        count = math.factorial(self.n)
        gap = (math.log(99.0 * (count - 1)) if self.identity_gap is None
               else self.identity_gap) if count > 1 else 0.0
        z = torch.full((count,), -gap, dtype=dtype, device=device)
        z[0] = 0.0
        return z

    def extra_repr(self) -> str:
        return f"n={self.n}, identity_gap={self.identity_gap}"
