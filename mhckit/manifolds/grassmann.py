"""The Grassmann manifold of ``p``-dimensional subspaces (JPmHC, arXiv 2602.18308)."""

from __future__ import annotations

import torch

from mhckit.manifolds.stiefel import Stiefel

__all__ = ["Grassmann"]


class Grassmann(Stiefel):
    r"""``Gr(n, p) = St(n, p) / O(p)``: subspaces of ``R^n`` of dimension ``p``, ``1 ≤ p ≤ n``.

    A point is stored as an orthonormal frame ``U`` (``n × p``, ``UᵀU = I``) of the subspace;
    ``U`` and ``UR`` (``R ∈ O(p)``) are the same point. The mixer is the orthogonal projector
    ``as_matrix(U) = U Uᵀ`` (``‖H‖₂ = 1``, rank ``p``), the Grassmann ``H_res`` of JPmHC
    (Sengupta, Wang & Brunswic, arXiv 2602.18308).

    **Quotient geometry.** Tangent vectors are horizontal lifts ``{Δ : UᵀΔ = 0}``;
    ``proju(U, Δ) = egrad2rgrad(U, Δ) = (I − UUᵀ) Δ``; the metric is ``tr(ΔᵀΔ')`` (the Euclidean
    and canonical Stiefel metrics agree on horizontal vectors). Retractions and transport are
    the :class:`~mhckit.manifolds.Stiefel` ones (``retraction="cayley" | "iterative-cayley" |
    "qr"``) applied to horizontal vectors, ``O(np²)``.

    **Geodesics** are exact: :meth:`expmap`, :meth:`logmap` and :meth:`dist` (``‖θ‖₂`` of the
    principal angles ``θ`` between the subspaces) in closed form.

    **Parametrization.** ``z`` holds the ``(n−p)·p`` entries of ``B`` (row-major), so
    ``param_shape = (p(n−p),) = (dim Gr(n, p),)``, and ``U`` is the first ``p`` columns of
    ``Cayley([[0, −Bᵀ], [B, 0]])``, in closed form ``U = 2 [I; B] (I + BᵀB)⁻¹ − [I; 0]``.
    ``identity_param() = 0`` gives ``U = [I_p; 0]``, ``H = diag(I_p, 0)``, with
    ``dH = dU Uᵀ + U dUᵀ``, ``dU = 2 [0; dB] ≠ 0``. For ``p = n`` the set is the single point
    ``H = I`` and ``param_shape = (0,)``.
    """

    name = "Grassmann"
    skew_generator = False  # z is B alone: (Ω, b) = (0, [0; B])

    def __init__(self, n: int, p: int, *, retraction: str = "cayley",
                 parametrization: str = "cayley", iterations: int = 2,
                 backward: str = "implicit") -> None:
        super().__init__(n, p, metric="euclidean", retraction=retraction,
                         parametrization=parametrization, iterations=iterations,
                         backward=backward)

    @property
    def param_shape(self) -> tuple[int]:
        return (self.p * (self._rows - self.p),)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Horizontal projection ``(I − UUᵀ) Δ``."""
        return u - x @ (x.mT @ u)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``(I − UUᵀ) G``: the horizontal part of the Euclidean gradient."""
        return self.proju(x, u)

    def ehess2rhess(self, x: torch.Tensor, egrad: torch.Tensor, ehess: torch.Tensor,
                    u: torch.Tensor) -> torch.Tensor:
        """``(I − UUᵀ) ehess − Δ UᵀG`` (Absil, Mahony & Sepulchre 2004; the quotient
        Hessian on horizontal lifts)."""
        return self.proju(x, ehess) - u @ (x.mT @ egrad)

    # -- exact geodesics by principal angles ----------------------------------------------
    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``X V cos(Σ) Vᵀ + W sin(Σ) Vᵀ`` for the thin SVD ``Δ = W Σ Vᵀ`` of the horizontal
        ``Δ = u`` (Edelman, Arias & Smith 1998, eq. 2.65; arXiv physics/9806030)."""
        dtype = x.dtype
        x, u = torch.broadcast_tensors(x.double(), u.double())
        w, sigma, vh = torch.linalg.svd(u, full_matrices=False)
        y = (x @ vh.mT * sigma.cos().unsqueeze(-2) + w * sigma.sin().unsqueeze(-2)) @ vh
        return y.to(dtype)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``W atan(Σ) Vᵀ`` for the thin SVD ``(I − XXᵀ) Y (XᵀY)⁻¹ = W Σ Vᵀ`` (Absil, Mahony &
        Sepulchre 2004, "Riemannian geometry of Grassmann manifolds", §3.8): the horizontal
        ``Δ`` with ``expmap(x, Δ)`` spanning ``y``; the singular values ``atan σ_i`` are the
        principal angles. Needs ``XᵀY`` invertible (no angle of π/2, the cut locus)."""
        dtype = x.dtype
        x, y = torch.broadcast_tensors(x.double(), y.double())
        xty = x.mT @ y
        ratio = torch.linalg.solve(xty.mT, (y - x @ xty).mT).mT  # (I − XXᵀ) Y (XᵀY)⁻¹
        w, sigma, vh = torch.linalg.svd(ratio, full_matrices=False)
        return ((w * sigma.atan().unsqueeze(-2)) @ vh).to(dtype)

    def as_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """The orthogonal projector ``U Uᵀ`` onto the subspace, shape ``(..., n, n)``."""
        return x @ x.mT

    def _check_vector_on_tangent(self, x, u, *, atol=None, rtol=None):
        ok, reason = self._check_shape(u.shape, "u")
        if not ok:
            return ok, reason
        tol = 1e-5 if atol is None else atol
        err = float((x.mT @ u).abs().max()) if u.numel() else 0.0
        if err > tol:
            return False, f"UᵀΔ is {err:.3e} (not horizontal), exceeds atol {tol:.1e}"
        return True, None

    def extra_repr(self) -> str:
        return (f"n={self._rows}, p={self.p}, retraction={self.retraction!r}, "
                f"parametrization={self.parametrization!r}")
