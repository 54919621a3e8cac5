"""The Stiefel manifold of orthonormal frames (JPmHC, arXiv 2602.18308)."""

from __future__ import annotations

import torch

from mhckit.functional import cayley, cayley_frame, iterative_cayley_frame, polar_refine
from mhckit.functional.small_inverse import small_inverse
from mhckit.functional.value_checks import value_checks_enabled
from mhckit.manifolds.base import CAYLEY_BOUND, Manifold, check_size, check_tensor

__all__ = ["Stiefel"]

METRICS = ("euclidean", "canonical")
RETRACTIONS = ("cayley", "iterative-cayley", "qr")
PARAMETRIZATIONS = ("cayley", "iterative-cayley")
BACKWARDS = ("implicit", "unrolled")
TRANSPORTS = ("projection", "differentiated")


def _choice(value: object, name: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def _sym(a: torch.Tensor) -> torch.Tensor:
    return 0.5 * (a + a.mT)


def _skew(a: torch.Tensor) -> torch.Tensor:
    return 0.5 * (a - a.mT)


def _orthogonal_log(w: torch.Tensor) -> torch.Tensor:
    """Principal logarithm of an orthogonal (hence normal, diagonalizable) ``w``:
    ``V diag(log λ) V⁻¹`` from its eigendecomposition, real part."""
    values, vectors = torch.linalg.eig(w)
    log = vectors @ torch.diag_embed(torch.log(values)) @ torch.linalg.inv(vectors)
    return log.real


def _working(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself in float32/float64, else upcast to float32 (bf16/fp16 inputs)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _generator(z: torch.Tensor, n: int, p: int, skew: bool
               ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(Ω, b) = (S, [0; B])`` from ``z``: the strict upper triangle of the skew ``S``
    (``p x p``; absent, ``Ω = None``, unless ``skew``), then ``B`` (``(n−p) x p``,
    row-major; ``b = None`` for ``p = n`` with ``skew``, the orthogonal group)."""
    k = p * (p - 1) // 2 if skew else 0
    lower = z[..., k:].reshape(*z.shape[:-1], n - p, p)
    b = (torch.cat([z.new_zeros(*z.shape[:-1], p, p), lower], dim=-2)
         if n > p or not skew else None)
    if not skew:
        return None, b
    rows, cols = torch.triu_indices(p, p, offset=1, device=z.device)
    upper = z.new_zeros(*z.shape[:-1], p, p)
    upper[..., rows, cols] = z[..., :k]
    return upper - upper.mT, b


class _CayleyColumns(torch.autograd.Function):
    """The first ``p`` columns ``Y`` of ``Cayley([[S, −Bᵀ], [B, 0]])`` from ``z``
    (:meth:`Stiefel.parametrize`), keeping only ``z`` for the backward.

    Forward: :func:`~mhckit.functional.cayley_frame.cayley_frame` at ``x = [I_p; 0]`` (where
    ``xᵀb = 0``, so ``Y = 2 [I; B] N − x`` with ``N = M⁻¹``, ``M = I − S + BᵀB``), then
    :func:`~mhckit.functional.polar_refine`, which moves ``Y`` by rounding only and whose
    derivative along the frame's tangent directions is the identity, so, as in
    :func:`~mhckit.functional.cayley`, it is not differentiated. Backward, with
    ``G = [G_t; G_b] = ∂L/∂Y`` and ``R = Nᵀ (G_t + BᵀG_b) Nᵀ`` (float64; ``N`` by the
    unrolled elimination of :func:`~mhckit.functional.small_inverse.small_inverse`, no
    solver call): ``∂L/∂S = 2R``, ``∂L/∂B = 2 G_b Nᵀ − 2B (R + Rᵀ)``. Where autograd kept
    the float64 frame, its solve (LU, pivots, solution) and the refinement's products,
    this keeps ``z``; the backward is differentiable again (it recomputes from ``z``).
    """

    @staticmethod
    def forward(ctx, z, n, p, skew):
        omega, b = _generator(z, n, p, skew)
        x = torch.eye(n, p, dtype=z.dtype, device=z.device)
        ctx.sizes = (n, p, skew)
        ctx.save_for_backward(z)
        return polar_refine(cayley_frame(x, omega, b))

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        n, p, skew = ctx.sizes
        omega, b = _generator(z.double(), n, p, skew)
        lower = b[..., p:, :]
        eye = torch.eye(p, dtype=torch.float64, device=z.device)
        m = eye + lower.mT @ lower if omega is None else eye - omega + lower.mT @ lower
        # (M⁻¹)ᵀ by the unrolled elimination: no solver call, no host synchronisation
        transposed_inverse = small_inverse(m).mT
        grad = grad.double()
        top, bottom = grad[..., :p, :], grad[..., p:, :]
        r = transposed_inverse @ (top + lower.mT @ bottom) @ transposed_inverse
        grad_z = 2.0 * (bottom @ transposed_inverse - lower @ (r + r.mT)).flatten(-2)
        if skew:
            rows, cols = torch.triu_indices(p, p, offset=1, device=z.device)
            grad_z = torch.cat([2.0 * (r[..., rows, cols] - r[..., cols, rows]), grad_z], -1)
        return grad_z.to(z.dtype), None, None, None


class Stiefel(Manifold):
    r"""``St(n, p) = {X ∈ R^{n×p} : XᵀX = I_p}``, ``1 ≤ p ≤ n``; ``St(n, n) = O(n)``.

    The residual mixer of JPmHC (Sengupta, Wang & Brunswic, arXiv 2602.18308): an orthogonal
    ``H_res`` keeps every singular value of the stream map at 1 (dynamical isometry).
    ``as_matrix(X)`` is ``X`` for ``p = n``; a thin frame (``p < n``) acts on the streams
    through its column space, ``X Xᵀ`` (the :class:`~mhckit.manifolds.Grassmann` mixer).

    **Metric** (``metric=``): ``"euclidean"`` ``⟨U, V⟩ = tr(UᵀV)`` with
    ``egrad2rgrad(X, G) = G − X sym(XᵀG)``; or ``"canonical"`` ``⟨U, V⟩ = tr(Uᵀ(I − ½XXᵀ)V)``
    (Edelman, Arias & Smith 1998) with ``egrad2rgrad(X, G) = G − X GᵀX``. Both share the
    tangent space ``{U : XᵀU + UᵀX = 0}`` and the projection ``proju(X, U) = U − X sym(XᵀU)``.

    **Retraction** (``retraction=``), all ``O(np²)``, none pads a thin frame to ``n × n``:

    * ``"cayley"`` (default): ``Cayley(W/2) X`` with ``W = P Xᵀ − X Pᵀ``,
      ``P = (I − ½XXᵀ)U`` (``WX = U``; Wen & Yin 2013), computed in closed form by
      :func:`~mhckit.functional.cayley_frame.cayley_frame` (one ``p × p`` inverse) and refined
      by :func:`~mhckit.functional.polar_refine`: exact to rounding;
    * ``"iterative-cayley"``: the same map by ``iterations`` fixed-point steps (Li, Fuxin &
      Todorovic, arXiv 2002.01113; JPmHC uses 2): products only, orthonormal only
      approximately (``≈ 3‖A‖₂⁴`` after 2 steps, ``A = W/2``; table in
      ``docs/manifolds/stiefel_grassmann.md``);
    * ``"qr"``: the Q factor of ``X + U`` with ``diag R > 0``.

    **Transport** (``transport=``): ``"projection"`` (default) projects onto the new tangent
    space; ``"differentiated"`` makes ``retr_transp``/``transp_follow_retr`` the
    differentiated retraction ``D R_X(U)[V]`` (Absil, Mahony & Sepulchre 2008, §8.1.2), so
    ``d/dt f(R_X(tU)) = ⟨grad f(Y), D R_X(tU)[U]⟩`` exactly -- what a Wolfe line search such
    as ``geoopt.optim.RiemannianLineSearch`` needs (with the projection its slope estimate
    is off at long steps). ``transp(X, Y, V)`` (no ``U``) stays the projection.

    **Parametrization** (``parametrization=``): ``z`` holds the ``p(p−1)/2`` strict upper
    triangle of a skew ``S`` (``p × p``) and then the ``(n−p)·p`` entries of ``B`` (row-major),
    so ``param_shape = (np − p(p+1)/2,) = (dim St(n, p),)``, and

        ``X = [first p columns of Cayley(A)]``,  ``A = [[S, −Bᵀ], [B, 0]]``  (``n × n`` skew)

    computed without forming ``A`` (one ``p × p`` inverse), with a closed-form backward
    that keeps only ``z`` (``_CayleyColumns``). For ``p = n`` this is
    ``Cayley(S)`` of a full skew matrix, ``n(n−1)/2`` numbers, computed by
    :func:`~mhckit.functional.cayley` (closed form for ``n ≤ 3``, else unrolled
    Gauss–Jordan; its backward keeps only ``X``). ``identity_param() = 0`` gives
    ``X = [I_p; 0]`` (the identity for ``p = n``) with ``dX = 2 dA [I_p; 0] ≠ 0``: the
    gradient does not vanish there.
    ``"iterative-cayley"`` replaces the inverse by the fixed-point iteration;
    ``backward="implicit"`` (default) differentiates its fixed point exactly, ``"unrolled"``
    runs autograd through the iterations.

    **Exact maps and second order.** :meth:`expmap` is the exponential of the chosen metric
    (Edelman–Arias–Smith closed forms); :meth:`logmap`/:meth:`dist` exist on ``O(n)``
    (``p = n``) and raise for thin frames; :meth:`ehess2rhess` gives the Riemannian Hessian.
    Measured retraction orders (``docs/testing.md``): Cayley is second order on ``O(n)`` and
    for the canonical metric, first order for the Euclidean metric on thin frames; QR is
    first order.

    ``random`` draws Haar-distributed frames (QR of a Gaussian, signs fixed).
    """

    name = "Stiefel"
    #: whether ``z`` starts with the ``p(p−1)/2`` entries of the skew ``S`` (``Grassmann``: no)
    skew_generator = True

    def __init__(self, n: int, p: int, *, metric: str = "euclidean",
                 retraction: str = "cayley", parametrization: str = "cayley",
                 iterations: int = 2, backward: str = "implicit",
                 transport: str = "projection") -> None:
        super().__init__()
        self._rows = check_size(n, "n")
        self.p = check_size(p, "p")
        if p > n:
            raise ValueError(f"p must be <= n (p orthonormal columns in R^n), got n={n}, p={p}")
        self.metric = _choice(metric, "metric", METRICS)
        self.retraction = _choice(retraction, "retraction", RETRACTIONS)
        self.parametrization = _choice(parametrization, "parametrization", PARAMETRIZATIONS)
        self.iterations = check_size(iterations, "iterations", minimum=0)
        self.backward = _choice(backward, "backward", BACKWARDS)
        self.transport = _choice(transport, "transport", TRANSPORTS)
        if self.transport == "differentiated" and self.retraction == "iterative-cayley":
            raise ValueError("transport='differentiated' needs retraction='cayley' or 'qr' "
                             "(closed-form differentials), got retraction='iterative-cayley'")

    @property
    def shape(self) -> tuple[int, int]:
        return (self._rows, self.p)

    @property
    def param_shape(self) -> tuple[int]:
        n, p = self._rows, self.p
        return (n * p - p * (p + 1) // 2,)

    # -- Riemannian mode --------------------------------------------------------------------
    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Frobenius-nearest frame: the polar factor ``U Vᵀ`` of ``x = U Σ Vᵀ`` (SVD, float64)."""
        x = check_tensor(x, "x", trailing=self.shape)
        u, _, vh = torch.linalg.svd(x.double(), full_matrices=False)
        return (u @ vh).to(x.dtype)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``U − X sym(XᵀU)``: the orthogonal projection onto ``T_X St`` (both metrics)."""
        return u - x @ _sym(x.mT @ u)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Riesz representative of ``⟨G, ·⟩`` in the chosen metric (class docstring)."""
        if self.metric == "canonical":
            return u - x @ (u.mT @ x)
        return self.proju(x, u)

    def ehess2rhess(self, x: torch.Tensor, egrad: torch.Tensor, ehess: torch.Tensor,
                    u: torch.Tensor) -> torch.Tensor:
        """Riemannian Hessian ``Hess f(X)[U]`` from the Euclidean gradient ``G`` and the
        Euclidean Hessian-vector product ``ehess = D²f(X)[U]``.

        * euclidean (Absil, Mahony & Trumpf 2013, arXiv 1205.2136, the Weingarten map):
          ``P_X(ehess − U sym(XᵀG))``;
        * canonical: ``D grad[U] + Γ(U, grad)`` with ``grad = G − XGᵀX``,
          ``D grad[U] = ehess − U GᵀX − X ehessᵀX − X GᵀU`` and the Christoffel form of
          Edelman, Arias & Smith (from their geodesic equation 2.41) polarized,
          ``Γ(U, V) = ½(UVᵀ + VUᵀ)X + ½X(UᵀΠV + VᵀΠU)``, ``Π = I − XXᵀ``.
        """
        if self.metric == "euclidean":
            return self.proju(x, ehess - u @ _sym(x.mT @ egrad))
        grad = egrad - x @ (egrad.mT @ x)
        dgrad = ehess - u @ (egrad.mT @ x) - x @ (ehess.mT @ x) - x @ (egrad.mT @ u)
        pu, pg = u - x @ (x.mT @ u), grad - x @ (x.mT @ grad)
        christoffel = 0.5 * ((u @ grad.mT + grad @ u.mT) @ x + x @ (u.mT @ pg + grad.mT @ pu))
        return self.proju(x, dgrad + christoffel)

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Cayley (exact or iterative) or QR retraction, see the class docstring."""
        dtype = x.dtype
        x, u = _working(x), _working(u)
        if self.retraction == "qr":
            q, r = torch.linalg.qr(x + u)
            sign = torch.where(torch.diagonal(r, dim1=-2, dim2=-1) < 0, -1.0, 1.0)
            return (q * sign.unsqueeze(-2).to(q.dtype)).to(dtype)
        # A = ½W = x Ω xᵀ + b xᵀ − x bᵀ with Ω = ½ skew(xᵀu), b = ½ (I − xxᵀ) u: A x = u / 2.
        xtu = x.mT @ u
        omega = 0.25 * (xtu - xtu.mT)
        b = 0.5 * (u - x @ xtu)
        if self.retraction == "iterative-cayley":
            y = iterative_cayley_frame(x, omega, b, iterations=self.iterations,
                                       backward=self.backward)
        else:
            y = polar_refine(cayley_frame(x, omega, b))
        return y.to(dtype)

    def retr_transp(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(R_X(U), T(V))``: ``T`` the projection or ``D R_X(U)[V]`` (``transport=``)."""
        y = self.retr(x, u)
        if self.transport == "projection":
            return y, self.transp(x, y, v)
        return y, self._retraction_differential(x, u, v, y)

    def transp_follow_retr(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor
                           ) -> torch.Tensor:
        return self.retr_transp(x, u, v)[1]

    def _retraction_differential(self, x, u, v, y):
        """``D R_X(U)[V]`` in closed form.

        * Cayley, ``Y = (I − A)⁻¹(I + A)X`` with ``A = A(U)`` linear in ``U``:
          ``D R[V] = (I − A)⁻¹ A(V) (X + Y)``, with ``A = L Rᵀ`` of rank ``2p`` so that
          ``(I − A)⁻¹ = I + L (I − RᵀL)⁻¹ Rᵀ`` (Woodbury: one ``2p × 2p`` solve);
        * QR, ``X + U = QR``: ``D R[V] = Q ρ(Qᵀ V R⁻¹) + (I − QQᵀ) V R⁻¹``, ``ρ(M)`` the
          strictly lower triangle of ``M`` minus its transpose (Absil, Mahony & Sepulchre
          2008, Example 8.1.5).
        """
        dtype = y.dtype
        x, u, v, y = (_working(t) for t in torch.broadcast_tensors(x, u, v, y))
        if self.retraction == "qr":
            q, r = torch.linalg.qr(x + u)
            sign = torch.where(torch.diagonal(r, dim1=-2, dim2=-1) < 0, -1.0, 1.0)
            q, r = q * sign.unsqueeze(-2), r * sign.unsqueeze(-1)
            vr = torch.linalg.solve_triangular(r, v, upper=True, left=False)  # V R⁻¹
            lower = torch.tril(q.mT @ vr, diagonal=-1)
            return (q @ (lower - lower.mT) + vr - q @ (q.mT @ vr)).to(dtype)

        def generator(w):  # A(w) = (xΩ + b) xᵀ − x bᵀ: the factors (xΩ + b, b)
            xtw = x.mT @ w
            omega, b = 0.25 * (xtw - xtw.mT), 0.5 * (w - x @ xtw)
            return x @ omega + b, b

        left_u, b_u = generator(u)
        left_v, b_v = generator(v)
        s = x + y
        m = left_v @ (x.mT @ s) - x @ (b_v.mT @ s)  # A(V)(X + Y)
        low, high = torch.cat([left_u, -x], -1), torch.cat([x, b_u], -1)  # A(U) = L Rᵀ
        eye = torch.eye(2 * self.p, dtype=x.dtype, device=x.device)
        return (m + low @ torch.linalg.solve(eye - high.mT @ low, high.mT @ m)).to(dtype)

    def inner(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor | None = None, *,
              keepdim: bool = False) -> torch.Tensor:
        """``tr(UᵀV)`` (euclidean) or ``tr(UᵀV) − ½ tr((XᵀU)ᵀ XᵀV)`` (canonical)."""
        v = u if v is None else v
        value = (u * v).sum(dim=(-2, -1), keepdim=keepdim)
        if self.metric == "canonical":
            value = value - 0.5 * ((x.mT @ u) * (x.mT @ v)).sum(dim=(-2, -1), keepdim=keepdim)
        return value

    # -- exact geodesics (Edelman, Arias & Smith 1998, arXiv physics/9806030) ---------------
    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The exponential map of the chosen metric, in closed form (Edelman–Arias–Smith).

        * euclidean (their eq. 2.14): ``[X, U] expm([[A, −S], [I, A]]) [I; 0] expm(−A)``,
          ``A = XᵀU``, ``S = UᵀU`` (``2p × 2p`` exponentials);
        * canonical (their eq. 2.42): ``X M + Q N`` with ``QR = (I − XXᵀ)U`` and
          ``[M; N] = expm([[A, −Rᵀ], [R, 0]]) [I; 0]``.

        For ``p = n`` both reduce to ``X expm(XᵀU)``, the group exponential of ``O(n)``.
        """
        dtype = x.dtype
        x, u = torch.broadcast_tensors(x.double(), u.double())
        a = x.mT @ u
        if self.p == self._rows:
            return (x @ torch.linalg.matrix_exp(_skew(a))).to(dtype)
        if self.metric == "euclidean":
            eye = torch.eye(self.p, dtype=x.dtype, device=x.device).expand_as(a)
            block = torch.cat([torch.cat([a, -(u.mT @ u)], -1), torch.cat([eye, a], -1)], -2)
            head = torch.linalg.matrix_exp(block)[..., :, : self.p]
            y = torch.cat([x, u], -1) @ head @ torch.linalg.matrix_exp(-a)
        else:
            q, r = torch.linalg.qr(u - x @ a)
            block = torch.cat([torch.cat([a, -r.mT], -1),
                               torch.cat([r, torch.zeros_like(a)], -1)], -2)
            head = torch.linalg.matrix_exp(block)[..., :, : self.p]
            y = x @ head[..., : self.p, :] + q @ head[..., self.p:, :]
        return y.to(dtype)

    no_exact_maps = ("the Stiefel logarithm of a thin frame (p < n) has no closed form "
                     "(it needs an iterative solver); exact for p = n and for Grassmann")

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``X log(XᵀY)`` on ``O(n)`` (``p = n``; ``log`` the principal matrix logarithm, real
        skew when ``det XᵀY = 1`` and no eigenvalue is ``−1``); raises for ``p < n``."""
        if self.p != self._rows:
            return super().logmap(x, y)
        w = x.double().mT @ y.double()
        if value_checks_enabled() and bool((torch.linalg.det(w) < 0).any()):
            raise ValueError("y must lie in the connected component of x (det(xᵀy) = 1) for "
                             "logmap on O(n), got det(xᵀy) = -1")
        return (x.double() @ _skew(_orthogonal_log(w))).to(x.dtype)

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        """``‖logmap(x, y)‖_x`` in the chosen metric."""
        v = self.logmap(x, y)
        return self.inner(x, v, keepdim=keepdim).clamp_min(0).sqrt()

    def random(self, *size, dtype=None, device=None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Haar-distributed frames of shape ``size`` (default ``shape``): QR of a Gaussian."""
        size = self._sample_size(size, dtype)
        gauss = torch.randn(*size, dtype=torch.float64, device=device, generator=generator)
        q, r = torch.linalg.qr(gauss)
        q = q * torch.where(torch.diagonal(r, dim1=-2, dim2=-1) < 0, -1.0, 1.0).unsqueeze(-2)
        return q.to(dtype or torch.get_default_dtype())

    # -- parametrization mode ---------------------------------------------------------------
    def parametrize(self, z: torch.Tensor) -> torch.Tensor:
        """First ``p`` columns of ``Cayley([[S, −Bᵀ], [B, 0]])``; shape ``(..., n, p)``."""
        z = check_tensor(z, "z", trailing=self.param_shape, bound=CAYLEY_BOUND)
        return self._frame(_working(z)).to(z.dtype)

    def identity_param(self, *, dtype: torch.dtype | None = None,
                       device: torch.device | str | None = None) -> torch.Tensor:
        """``z = 0``: ``X = [I_p; 0]`` with a non-vanishing derivative ``dX = 2 dA [I_p; 0]``."""
        return torch.zeros(self.param_shape, dtype=dtype, device=device)

    def _generator(self, z: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(Ω, b) = (S, [0; B])`` from ``z`` of shape ``(..., param_shape)``."""
        return _generator(z, self._rows, self.p, self.skew_generator)

    def _frame(self, z: torch.Tensor) -> torch.Tensor:
        """The parametrized frame in ``z``'s (working) dtype."""
        if self.parametrization == "iterative-cayley":
            omega, b = self._generator(z)
            x = torch.eye(self._rows, self.p, dtype=z.dtype, device=z.device)
            x = x.expand(*z.shape[:-1], self._rows, self.p)
            return iterative_cayley_frame(x, omega, b, iterations=self.iterations,
                                          backward=self.backward)
        if self.p == self._rows and self.skew_generator:  # Cayley(S) itself: no float64 frame
            return cayley(self._generator(z)[0], refine=True)
        return _CayleyColumns.apply(z, self._rows, self.p, self.skew_generator)

    # -- the mixer ----------------------------------------------------------------------------
    def as_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """``X`` for ``p = n``; ``X Xᵀ`` (projector onto the column space) for ``p < n``."""
        return x if self.p == self._rows else x @ x.mT

    def constraint_error(self, x: torch.Tensor) -> torch.Tensor:
        """``max |XᵀX − I|`` per frame (Gram matrix in float64)."""
        x = check_tensor(x, "x", trailing=self.shape)
        x64 = x.double()
        eye = torch.eye(self.p, dtype=torch.float64, device=x.device)
        return (x64.mT @ x64 - eye).abs().amax(dim=(-2, -1)).to(_working(x).dtype)

    def _check_vector_on_tangent(self, x, u, *, atol=None, rtol=None):
        ok, reason = self._check_shape(u.shape, "u")
        if not ok:
            return ok, reason
        tol = 1e-5 if atol is None else atol
        err = float((x.mT @ u + u.mT @ x).abs().max()) if u.numel() else 0.0
        if err > tol:
            return False, f"XᵀU + UᵀX is {err:.3e}, exceeds atol {tol:.1e}"
        return True, None

    def extra_repr(self) -> str:
        return (f"n={self._rows}, p={self.p}, metric={self.metric!r}, "
                f"retraction={self.retraction!r}, parametrization={self.parametrization!r}"
                + (f", transport={self.transport!r}" if self.transport != "projection" else ""))
