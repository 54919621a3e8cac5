"""Mixers with unit marginals on the unit spectral-norm sphere (sHC, arXiv 2603.20896)."""

from __future__ import annotations

import torch

from mhckit.functional import cayley, helmert_basis
from mhckit.manifolds.base import (
    CAYLEY_BOUND,
    Manifold,
    check_size,
    check_tensor,
    frobenius_inner,
)

__all__ = ["SpectralSphere"]


class SpectralSphere(Manifold):
    r"""``{H ∈ R^{n×n} : H1 = 1, 1ᵀH = 1ᵀ, ‖H‖₂ = 1}`` -- negative entries allowed.

    Every such ``H`` is ``J + U_z B U_zᵀ`` with ``J = 11ᵀ/n``, ``U_z`` the ``n × (n−1)``
    Helmert basis of ``1⊥`` and ``B = U_zᵀ H U_z`` its ``(n−1) × (n−1)`` block on ``1⊥``;
    since ``1/√n`` is a unit singular vector with singular value 1,
    ``‖H‖₂ = max(1, ‖B‖₂)``, so the set is ``{‖B‖₂ ≤ 1}``: a convex body of dimension
    ``(n−1)²`` in the affine plane of unit marginals (Liu, Zhang & Li, "Beyond the Birkhoff
    polytope: spectral-sphere-constrained hyper-connections", arXiv 2603.20896).

    **Parametrization** (the paper's): ``z = (a, b, c)`` with ``(n−1)(n−2)/2`` entries each
    for the skew matrices ``S_a, S_b`` (upper triangles) and ``n−1`` for ``c``,

        ``H = J + U_z · U diag(σ) Vᵀ · U_zᵀ``,  ``U = cayley(S_a)``, ``V = cayley(S_b)``,
        ``σ = tanh(c)``,

    so ``‖H‖₂ = max(1, max|σ|) = 1`` exactly and ``param_shape = ((n−1)²,)``. The Cayley
    factors are exact to rounding: a closed form for ``n ≤ 4``, else an unrolled inverse
    refined by two Newton–Schulz steps (``cayley(..., refine=True)``; a bare float32 inverse
    at entries near ``1e4`` is orthogonal only to ``~1e-3``).

    **Generators** (``generators=``). ``"linear"``: the skew entries are ``a`` and ``b``
    themselves. ``"tanh"`` (the sHC code, 6zHAOyi/s2HC ``litgpt/hyper_conn/shc.py``): they
    are bounded, ``S_a = skew(γ_a·tanh(a))``, ``S_b = skew(γ_b·tanh(b))``, with two learned
    scalars ``γ_a, γ_b`` (initially 1) carried as the last two entries of ``z``, so
    ``param_shape = ((n−1)² + 2,)``. A dynamic mixer moves ``a``, ``b`` and ``c`` per token,
    each with its own gate (:attr:`dynamic_groups` ``= (k, k, n−1)``), and ``γ`` only
    statically. The ``sHC`` preset uses ``"tanh"``.

    **Identity.** ``H = I`` needs ``σ = 1``, i.e. ``c → ∞`` where ``tanh' = 0``: the exact
    identity has no gradient. :meth:`identity_param` therefore returns ``a = b = 0`` and
    ``c = identity_logit`` (default 3.0): ``H = tanh(3) I + (1 − tanh(3)) J ≈ 0.995 I +
    0.005 J``, with ``dσ/dc = 1 − tanh²(3) ≈ 0.0099``. Pass a large ``identity_logit`` for an
    (almost) exact but gradient-free identity.

    **Riemannian mode.** Metric: Frobenius (Euclidean). Tangent space (interior points):
    ``{U : U1 = 0, 1ᵀU = 0}``, projection ``proju(x, u) = P u P`` with ``P = I − J``.
    ``projx`` is the exact Frobenius-nearest point: ``J + P x P`` fixes the marginals, then
    the singular values of the block ``B`` are clipped to ``≤ 1``. Retraction
    ``retr(x, u) = projx(x + u)``: at an interior point ``x + tu`` stays in the set for small
    ``t`` (so ``retr = x + tu``, first order trivially); on the boundary ``‖B‖₂ = 1`` it is the
    metric projection onto a convex set, the standard projected-gradient step.

    Parameter count at ``n = 4`` (whole sublayer, ``n·C·((n−1)² + 2n)``): ``68C``.
    """

    name = "SpectralSphere"

    def __init__(self, n: int, *, identity_logit: float = 3.0, generators: str = "linear"
                 ) -> None:
        super().__init__()
        self._size = check_size(n, "n", minimum=2)
        if generators not in ("linear", "tanh"):
            raise ValueError(f"generators must be 'linear' or 'tanh', got {generators!r}")
        self.generators = generators
        if not isinstance(identity_logit, (int, float)) or isinstance(identity_logit, bool):
            raise TypeError(f"identity_logit must be a float, got {type(identity_logit).__name__}")
        if not 0.0 < identity_logit < float("inf"):
            raise ValueError(f"identity_logit must be finite and > 0, got {identity_logit}")
        self.identity_logit = float(identity_logit)
        self._num_skew = (n - 1) * (n - 2) // 2
        self._bases: dict = {}

    @property
    def shape(self) -> tuple[int, int]:
        return (self._size, self._size)

    @property
    def param_shape(self) -> tuple[int]:
        return ((self._size - 1) ** 2 + (2 if self.generators == "tanh" else 0),)

    @property
    def dynamic_groups(self) -> tuple[int, ...]:
        """``((n−1)²,)`` for ``"linear"``; ``(k, k, n−1)`` for ``"tanh"`` (sHC's three gated
        parts ``a``, ``b``, ``c``; its ``γ`` stay static)."""
        if self.generators == "linear":
            return ((self._size - 1) ** 2,)
        return (self._num_skew, self._num_skew, self._size - 1)

    # -- helpers ----------------------------------------------------------------------------
    def _basis(self, like: torch.Tensor) -> torch.Tensor:
        """Helmert basis ``U_z`` (``n × (n−1)``) in ``like``'s dtype and device, cached."""
        key = (like.dtype, like.device)
        if key not in self._bases:
            self._bases[key] = helmert_basis(self._size, dtype=like.dtype, device=like.device)
        return self._bases[key]

    def _assemble(self, block: torch.Tensor) -> torch.Tensor:
        """``J + U_z B U_zᵀ`` for a block ``B`` of shape ``(..., n−1, n−1)``."""
        basis = self._basis(block)
        return basis @ block @ basis.mT + 1.0 / self._size

    def _block(self, x: torch.Tensor) -> torch.Tensor:
        """The ``1⊥`` block ``U_zᵀ x U_z`` of shape ``(..., n−1, n−1)``."""
        basis = self._basis(x)
        return basis.mT @ x @ basis

    def _skew(self, v: torch.Tensor) -> torch.Tensor:
        """Skew ``(n−1) × (n−1)`` matrix whose strict upper triangle is ``v``."""
        m = self._size - 1
        rows, cols = torch.triu_indices(m, m, offset=1, device=v.device)
        a = v.new_zeros(*v.shape[:-1], m, m)
        a[..., rows, cols] = v
        return a - a.mT

    def _tangent_projection(self, u: torch.Tensor) -> torch.Tensor:
        """``P u P`` with ``P = I − J``: remove row and column means."""
        u = u - u.mean(dim=-1, keepdim=True)
        return u - u.mean(dim=-2, keepdim=True)

    # -- Riemannian mode --------------------------------------------------------------------
    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Frobenius-nearest point: unit marginals, then singular values of ``B`` clipped to 1."""
        x = check_tensor(x, "x", trailing=self.shape)
        dtype = x.dtype
        work = x if dtype in (torch.float32, torch.float64) else x.float()
        u, s, vh = torch.linalg.svd(self._block(work))
        return self._assemble((u * s.clamp(max=1.0).unsqueeze(-2)) @ vh).to(dtype)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self._tangent_projection(u)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self._tangent_projection(u)

    def ehess2rhess(self, x: torch.Tensor, egrad: torch.Tensor, ehess: torch.Tensor,
                    u: torch.Tensor) -> torch.Tensor:
        """``P ehess P``: the interior is flat (an open set of an affine plane, Frobenius
        metric), so the Hessian is the projected Euclidean one."""
        return self._tangent_projection(ehess)

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``projx(x + u)`` (projection retraction, see the class docstring)."""
        return self.projx(x + u)

    def inner(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor | None = None, *,
              keepdim: bool = False) -> torch.Tensor:
        return frobenius_inner(u, v, keepdim=keepdim)

    def random(self, *size, dtype=None, device=None) -> torch.Tensor:
        """``parametrize(z)``, ``z`` standard Gaussian: interior points, negative entries likely."""
        size = self._sample_size(size, dtype)
        z = torch.randn(*size[:-2], *self.param_shape, dtype=dtype, device=device)
        return self.parametrize(z)

    # -- parametrization mode ---------------------------------------------------------------
    def parametrize(self, z: torch.Tensor) -> torch.Tensor:
        """``J + U_z cayley(S_a) diag(tanh c) cayley(S_b)ᵀ U_zᵀ``; shape ``(..., n, n)``."""
        z = check_tensor(z, "z", trailing=self.param_shape, bound=CAYLEY_BOUND)
        dtype = z.dtype
        work = z if dtype in (torch.float32, torch.float64) else z.float()
        k, m = self._num_skew, self._size - 1
        a, b, c = work[..., :k], work[..., k:2 * k], work[..., 2 * k:2 * k + m]
        if self.generators == "tanh":
            scales = work[..., 2 * k + m:]
            a, b = scales[..., :1] * torch.tanh(a), scales[..., 1:] * torch.tanh(b)
        left = cayley(self._skew(a), refine=True)
        right = cayley(self._skew(b), refine=True)
        sigma = torch.tanh(c)
        return self._assemble((left * sigma.unsqueeze(-2)) @ right.mT).to(dtype)

    def identity_param(self, *, dtype=None, device=None) -> torch.Tensor:
        """``a = b = 0``, ``c = identity_logit`` (and ``γ = 1`` for ``"tanh"``):
        ``H = tanh(c) I + (1 − tanh(c)) J``."""
        z = torch.zeros(self.param_shape, dtype=dtype, device=device)
        start = 2 * self._num_skew
        z[start:start + self._size - 1] = self.identity_logit
        z[start + self._size - 1:] = 1.0
        return z

    def constraint_error(self, x: torch.Tensor) -> torch.Tensor:
        """``max(|H1 − 1|, |1ᵀH − 1ᵀ|, |‖H‖₂ − 1|)`` per matrix."""
        x = check_tensor(x, "x", trailing=self.shape)
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        rows = (x.sum(dim=-1) - 1).abs().amax(dim=-1)
        cols = (x.sum(dim=-2) - 1).abs().amax(dim=-1)
        norm = (torch.linalg.matrix_norm(x, ord=2) - 1).abs()
        return torch.maximum(torch.maximum(rows, cols), norm)

    def _check_vector_on_tangent(self, x, u, *, atol=None, rtol=None):
        ok, reason = self._check_shape(u.shape, "u")
        if not ok:
            return ok, reason
        tol = 1e-5 if atol is None else atol
        err = max(float(u.sum(dim=-1).abs().max()), float(u.sum(dim=-2).abs().max()))
        if err > tol:
            return False, f"row/column sums of u are {err:.3e}, exceed atol {tol:.1e}"
        return True, None

    def extra_repr(self) -> str:
        return (f"n={self._size}, identity_logit={self.identity_logit}, "
                f"generators={self.generators!r}")
