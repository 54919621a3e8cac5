"""All real ``n x n`` matrices: the unconstrained residual mixer of Hyper-Connections."""

from __future__ import annotations

import torch

from mhckit.manifolds.base import SquareManifold, check_tensor, frobenius_inner

__all__ = ["Unconstrained"]


class Unconstrained(SquareManifold):
    """The whole space ``R^{n x n}`` with the Frobenius metric (a flat, Euclidean "manifold").

    This is the set ``H_res`` lives in for the original Hyper-Connections (HC, Zhu et al.,
    arXiv 2409.19606): nothing bounds its spectrum, which is why the composite over depth can
    grow without limit (the mHC paper, arXiv 2512.24880, measures a gain near 3000). It is a
    manifold only so that HC plugs into the same code as the constrained sets:

    * ``parametrize(z) = z`` with ``param_shape = (n, n)``, ``identity_param() = I``;
    * ``projx``, ``proju``, ``egrad2rgrad`` are the identity, ``retr(x, u) = x + u``;
    * ``inner(x, u, v) = Σ u ⊙ v`` over the last two dimensions; ``expmap = retr``,
      ``logmap(x, y) = y − x``, ``dist`` the Frobenius distance (exact: the space is flat);
    * ``random`` draws ``I + G/√n`` with ``G`` standard Gaussian (a perturbed identity);
    * ``constraint_error`` is zero.
    """

    name = "Unconstrained"

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return u

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return u

    def ehess2rhess(self, x: torch.Tensor, egrad: torch.Tensor, ehess: torch.Tensor,
                    u: torch.Tensor) -> torch.Tensor:
        return ehess

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return x + u

    def inner(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor | None = None, *,
              keepdim: bool = False) -> torch.Tensor:
        return frobenius_inner(u, v, keepdim=keepdim)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Straight lines are the geodesics of a flat space: ``x + u``."""
        return x + u

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y - x

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        return frobenius_inner(y - x, keepdim=keepdim).sqrt()

    def random(self, *size, dtype=None, device=None) -> torch.Tensor:
        """``I + G/√n`` of shape ``size`` (default ``(n, n)``; trailing dims must be ``(n, n)``)."""
        size = self._sample_size(size, dtype)
        eye = torch.eye(self._size, dtype=dtype, device=device)
        return eye + torch.randn(*size, dtype=dtype, device=device) / self._size ** 0.5

    def parametrize(self, z: torch.Tensor) -> torch.Tensor:
        return check_tensor(z, "z", trailing=self.param_shape)

    def identity_param(self, *, dtype=None, device=None) -> torch.Tensor:
        return torch.eye(self._size, dtype=dtype, device=device)

    def constraint_error(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x", trailing=self.shape)
        return x.new_zeros(x.shape[:-2])

    def _check_vector_on_tangent(self, x, u, *, atol=None, rtol=None):
        return self._check_shape(u.shape, "u")

    def extra_repr(self) -> str:
        return f"n={self._size}"
