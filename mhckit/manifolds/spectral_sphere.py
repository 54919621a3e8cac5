"""Mixers with unit marginals on the unit spectral-norm sphere (sHC, arXiv 2603.20896)."""

from __future__ import annotations

import math

import torch

from mhckit.functional import helmert_basis
from mhckit.functional.cayley import cayley_values, cayley_vjp
from mhckit.manifolds.base import (
    CAYLEY_BOUND,
    Manifold,
    check_size,
    check_tensor,
    frobenius_inner,
)

__all__ = ["SpectralSphere"]


def _skew_pattern(m: int, dtype: torch.dtype, device: torch.device | None) -> torch.Tensor:
    """``E`` of shape ``(m(m−1)/2, m·m)`` with ``v @ E = vec(S)``, ``S`` the skew ``m x m``
    matrix whose strict upper triangle is ``v`` (one ``±1`` per column, so exact)."""
    rows, cols = torch.triu_indices(m, m, offset=1)
    pattern = torch.zeros(rows.numel(), m, m, dtype=dtype)
    index = torch.arange(rows.numel())
    pattern[index, rows, cols] = 1.0
    pattern[index, cols, rows] = -1.0
    return pattern.flatten(1).to(device)


class _RotatedSpectrum(torch.autograd.Function):
    """``(B, U, V)`` with ``B = U diag(σ) Vᵀ``, ``U = Cayley(S_a)``, ``V = Cayley(S_b)``,
    ``σ = tanh(c)``, from ``z = (a, b, c[, γ_a, γ_b])`` (:meth:`SpectralSphere.parametrize`).

    One function instead of some twenty autograd nodes: it keeps ``z``, ``U`` and ``V``
    (``3(n−1)²`` numbers per matrix, 2 more with ``γ``) where autograd kept every intermediate of
    the two closed-form Cayley maps, ``U diag(σ)`` and the ``tanh`` outputs. The backward
    recomputes the element-wise ``tanh`` from ``z``:
    ``∂/∂(Uσ) = G V``, ``∂/∂U = (G V) diag(σ)``, ``∂/∂σ = diag(Uᵀ G V)``, ``∂/∂V = Gᵀ U diag(σ)``,
    each rotation through :func:`~mhckit.functional.cayley.cayley_vjp` and the skew
    pattern ``E`` (``vec S = v E``: ``∂/∂v = vec(∂/∂S) Eᵀ``), ``tanh' = 1 − tanh²``. ``U`` and
    ``V`` are outputs, so the backward is differentiable again.
    """

    @staticmethod
    def forward(ctx, z, pattern, scaled):
        a, b, c, scales = _split(z, pattern)
        if scaled:
            a, b = scales[..., :1] * torch.tanh(a), scales[..., 1:] * torch.tanh(b)
        left = cayley_values(_skew_matrix(a, pattern), refine=True)
        right = cayley_values(_skew_matrix(b, pattern), refine=True)
        sigma = torch.tanh(c)
        ctx.pattern, ctx.scaled = pattern, scaled
        ctx.set_materialize_grads(False)  # U and V are outputs only for the double backward
        ctx.save_for_backward(z, left, right)
        return (left * sigma.unsqueeze(-2)) @ right.mT, left, right

    @staticmethod
    def backward(ctx, grad, grad_left, grad_right):
        z, left, right = ctx.saved_tensors
        pattern = ctx.pattern
        a, b, c, scales = _split(z, pattern)
        sigma = torch.tanh(c)
        if grad is None:
            grad = torch.zeros_like(left)
        through_right = grad @ right  # ∂/∂(U diag σ)
        grad_sigma = (left * through_right).sum(-2)
        to_left = through_right * sigma.unsqueeze(-2)
        to_right = grad.mT @ (left * sigma.unsqueeze(-2))
        grad_left = to_left if grad_left is None else grad_left + to_left
        grad_right = to_right if grad_right is None else grad_right + to_right
        flat = pattern.mT
        grad_a = cayley_vjp(left, grad_left).flatten(-2) @ flat
        grad_b = cayley_vjp(right, grad_right).flatten(-2) @ flat
        parts = []
        if ctx.scaled:
            tanh_a, tanh_b = torch.tanh(a), torch.tanh(b)
            grad_scales = torch.stack([(grad_a * tanh_a).sum(-1), (grad_b * tanh_b).sum(-1)], -1)
            grad_a = grad_a * scales[..., :1] * (1 - tanh_a.square())
            grad_b = grad_b * scales[..., 1:] * (1 - tanh_b.square())
            parts = [grad_scales]
        grad_c = grad_sigma * (1 - sigma.square())
        return torch.cat([grad_a, grad_b, grad_c, *parts], dim=-1), None, None


def _split(z: torch.Tensor, pattern: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(a, b, c, γ)`` of ``z``: ``k``, ``k``, ``m = n − 1`` entries and the rest (``γ``,
    maybe empty), with ``pattern`` of shape ``(k, m·m)``."""
    k, m = pattern.shape[0], math.isqrt(pattern.shape[-1])
    return z[..., :k], z[..., k:2 * k], z[..., 2 * k:2 * k + m], z[..., 2 * k + m:]


def _skew_matrix(v: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """The skew matrix ``S`` with ``vec S = v E``, shape ``(..., m, m)``."""
    m = math.isqrt(pattern.shape[-1])
    return (v @ pattern).unflatten(-1, (m, m))


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

    **Backward.** One custom function from ``z`` to ``U diag(σ) Vᵀ`` keeps ``z``, ``U`` and
    ``V`` (29 numbers per matrix at ``n = 4``, where autograd through the closed forms kept
    87) and recomputes the ``tanh`` from ``z``.

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
        self._bases: dict = {}  # Helmert bases and skew patterns, per dtype and device

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
        key = ("pattern", work.dtype, work.device)
        if key not in self._bases:
            self._bases[key] = _skew_pattern(self._size - 1, work.dtype, work.device)
        block = _RotatedSpectrum.apply(work, self._bases[key], self.generators == "tanh")[0]
        return self._assemble(block).to(dtype)

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
