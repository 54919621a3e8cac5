"""Kronecker products of constraint sets: ``H = A₁ ⊗ … ⊗ A_K`` (KromHC, arXiv 2601.21579)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from string import ascii_letters

import torch
from torch import nn

from mhckit.functional import kron, kron_apply, nearest_kronecker_factors
from mhckit.functional.validation import check_bool
from mhckit.manifolds.base import Manifold, check_size, check_tensor, default_atol
from mhckit.manifolds.permutation_hull import PermutationHull

__all__ = ["Kronecker"]

# Multiply-adds per stream element that one extra pass over the streams costs (order of
# magnitude of a machine's flops-per-byte balance): ``apply`` uses mode products only when
# the dense matmul's ``n`` multiply-adds per element exceed ``K`` passes' worth.
MODE_PRODUCT_BALANCE = 32


def _prime_factors(n: int) -> list[int]:
    """Prime factors of ``n`` in increasing order, with multiplicity."""
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out + ([n] if n > 1 else [])


class Kronecker(Manifold):
    r"""``{A₁ ⊗ … ⊗ A_K : A_k ∈ M_k}`` for mhckit manifolds ``M_k`` with square points.

    A point is the full ``N × N`` matrix, ``N = Π N_k`` (so it can be a ``ManifoldParameter``);
    the factors are recovered by :meth:`factors`. The mixer is ``⊗_k M_k.as_matrix(A_k)``,
    ``n × n`` with ``n = Π n_k`` streams (``N = n`` unless a factor reads its point out, as
    ``Orthostochastic(n_k, s)`` does with an ``n_k s × n_k s`` orthogonal point).

    Kronecker products keep what the factors share: doubly stochastic ⊗ doubly stochastic is
    doubly stochastic, orthogonal ⊗ orthogonal is orthogonal, and the singular values of the
    product are all products of the factors' singular values. With ``PermutationHull(2)``
    factors this is KromHC (Zhou, Gu, Iacovides & Mandic, arXiv 2601.21579); any factors
    mix, e.g. ``Kronecker(PermutationHull(2), PermutationHull(3))`` is a 6-stream mixer,
    which the paper's code (powers of two only) cannot build -- see :meth:`of_size`.

    **Parametrization.** ``z`` of shape ``(Σ_k |z_k|,)`` is split into the flattened factor
    parameters, ``H = ⊗_k M_k.parametrize(z_k)``; :meth:`parametrize_factors` returns the
    factors alone and :meth:`apply_factors` mixes streams ``(..., n, C)`` by mode products
    (``n·C·Σ n_k`` multiply-adds instead of ``n²·C``) without forming ``H``.

    **Riemannian geometry.** Every factor here fixes its own scale (``A_k ∉ T_{A_k}M_k``:
    unit marginals, orthogonality), so ``(A_k) ↦ ⊗A_k`` is an immersion and the tangent space
    at ``X = ⊗A_k`` is ``V = {Σ_k A₁⊗…⊗Ȧ_k⊗…⊗A_K : Ȧ_k ∈ T_{A_k}M_k}`` with unique
    components ``Ȧ_k``. The metric is the product metric of the factors,
    ``⟨ξ, η⟩_X = Σ_k ⟨ξ_k, η_k⟩_{M_k, A_k}``. With ``C_k(U)`` the partial contraction of ``U``
    against all factors but ``k`` (the Euclidean gradient w.r.t. ``A_k`` of ``⟨U, ⊗A_j⟩``):

    * components: ``ξ_k = P_k(C_k(ξ)/c_k − r_k A_k)``, ``c_k = Π_{j≠k} ‖A_j‖²``, where
      ``P_k = M_k.proju(A_k, ·)`` and the scalar ``r_k`` removes the radial part
      (``C_k(ξ)/c_k = ξ_k + r_k A_k`` on ``V``; ``r_k`` is read off the normal component
      ``A_k − P_k A_k ≠ 0``);
    * ``proju(X, U) = Σ_k A₁⊗…⊗ξ_k(U)⊗…⊗A_K`` -- linear, onto ``V``, idempotent;
    * ``egrad2rgrad(X, G) = Σ_k A₁⊗…⊗M_k.egrad2rgrad(A_k, C_k(G))⊗…⊗A_K`` -- each factor
      takes its own Riemannian gradient step, so ``⟨egrad2rgrad(G), V⟩_X = ⟨G, V⟩_F``;
    * ``retr(X, U) = ⊗_k M_k.retr(A_k, ξ_k(U))`` (factor-wise; first order because
      ``d/dt ⊗_k retr_k(A_k, tξ_k)|₀ = Σ_k …⊗ξ_k⊗…``); ``transp`` projects onto ``V``;
    * ``projx(X)``: nearest Kronecker product (Van Loan–Pitsianis SVD, recursive for
      ``K > 2``), each factor rescaled and passed through ``M_k.projx``.

    Factor scale: the unit-norm directions from the SVD are rescaled, for factors
    ``1…K−1``, by whichever of ``N_k / 1ᵀF1`` (unit marginals) or ``√N_k`` (orthogonal) gives
    the smaller ``M_k.constraint_error``; the last factor takes the remaining scale and sign,
    and a sign its set rejects is moved onto an earlier factor whose set contains ``−A``.
    Factors whose scale is not fixed that way (e.g. ``Unconstrained``) are refused for
    ``K ≥ 2``; nested ``Kronecker`` factors are flattened (associativity). Factor recovery
    costs one small SVD per factor; it runs in the Riemannian methods (static mixers), never
    in :meth:`parametrize`.
    """

    name = "Kronecker"

    def __init__(self, *factors: Manifold) -> None:
        super().__init__()
        if not factors:
            raise ValueError("Kronecker needs at least one factor manifold, got none")
        for k, factor in enumerate(factors):
            if not isinstance(factor, Manifold):
                raise TypeError(
                    f"factors[{k}] must be a mhckit Manifold, got {type(factor).__name__}"
                )
            if len(factor.shape) != 2 or factor.shape[0] != factor.shape[1]:
                raise ValueError(
                    f"factors[{k}] must have square points (n_k, n_k), got shape {factor.shape} "
                    f"({factor.__class__.__name__})"
                )
        # Kronecker products are associative: nested products join the flat list of factors.
        factors = tuple(g for f in factors
                        for g in (f.factor_manifolds if isinstance(f, Kronecker) else [f]))
        self.factor_manifolds = nn.ModuleList(factors)
        self.sizes = tuple(f.shape[-1] for f in factors)
        self._size = math.prod(self.sizes)
        self._param_sizes = tuple(math.prod(f.param_shape) for f in factors)
        # Exact iff every factor is; the marginal errors of inexact factors add up.
        self.exact = all(f.exact for f in factors)
        self.tol = sum(f.tol for f in factors if not f.exact)
        samples = [f.random(*f.shape, dtype=torch.float64) for f in factors]
        if len(factors) > 1:
            for k, (factor, sample) in enumerate(zip(factors, samples, strict=True)):
                self._require_fixed_scale(k, factor, sample)
        # Points are their own mixers unless a factor reads its point out (Orthostochastic:
        # Q ↦ block energies); then as_matrix goes through the factors.
        self._points_are_mixers = all(
            torch.equal(f.as_matrix(p), p) for f, p in zip(factors, samples, strict=True))

    @classmethod
    def _require_fixed_scale(cls, k: int, factor: Manifold, point: torch.Tensor) -> None:
        """Refuse a factor whose points :meth:`factors` cannot rescale: the point must not be
        tangent to the set, and unit marginals or orthogonality must fix its norm."""
        normal = point - factor.proju(point, point)
        direction = point / point.norm()
        rescaled = direction * cls._factor_scale(factor, direction)
        if (float(normal.norm()) <= 1e-8 * float(point.norm())
                or float(torch.minimum((rescaled - point).norm(), (rescaled + point).norm()))
                > 1e-4 * float(point.norm())):  # a wrong rule is off by O(1); Sinkhorn ~tol
            raise ValueError(
                f"factors[{k}] ({factor!r}) does not fix its scale by unit marginals or "
                "orthogonality, so (cA)⊗(B/c) = A⊗B and the factors of a product are not "
                "determined; use Birkhoff, PermutationHull, Orthostochastic, square Stiefel "
                "or SpectralSphere factors"
            )

    @classmethod
    def of_size(cls, n: int, factor: Callable[[int], Manifold] | None = None, *,
                powers_of_two: bool = False) -> Kronecker:
        """The KromHC mixer for ``n`` streams: ``factor(p)`` for each prime factor ``p`` of ``n``.

        ``factor`` defaults to :class:`~mhckit.manifolds.PermutationHull`. ``n = 6`` gives
        ``PermutationHull(2) ⊗ PermutationHull(3)``. ``powers_of_two=True`` is the paper's code
        (arXiv 2601.21579: ``n = 2^K``, ``K`` factors of size 2) and refuses any other ``n``.
        """
        check_size(n, "n", minimum=2)
        check_bool(powers_of_two, "powers_of_two")
        factor = PermutationHull if factor is None else factor
        primes = _prime_factors(n)
        if powers_of_two and set(primes) != {2}:
            raise ValueError(
                f"n must be a power of two with powers_of_two=True (the KromHC paper's code), "
                f"got {n} = {'*'.join(map(str, primes))}; use powers_of_two=False"
            )
        return cls(*(factor(p) for p in primes))

    @property
    def shape(self) -> tuple[int, int]:
        return (self._size, self._size)

    @property
    def param_shape(self) -> tuple[int]:
        return (sum(self._param_sizes),)

    @property
    def n(self) -> int:
        """Streams mixed: ``Π_k M_k.n`` (the point side ``N`` differs for Orthostochastic)."""
        return math.prod(f.n for f in self.factor_manifolds)

    # -- factors ----------------------------------------------------------------------------
    def factors(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Factors ``A_k`` (``(..., n_k, n_k)``) with ``x = ⊗A_k`` for a point ``x``.

        Exact (to rounding) on the set; for other ``x`` the nearest Kronecker product's
        factors with scales chosen as in the class docstring (not projected, see :meth:`projx`).
        """
        return self._factors(check_tensor(x, "x", trailing=self.shape))

    def _factors(self, x: torch.Tensor) -> list[torch.Tensor]:
        if len(self.sizes) == 1:
            return [x]
        directions = nearest_kronecker_factors(x, self.sizes)
        out, total = [], torch.ones_like(x[..., 0, 0])
        for factor, direction in zip(self.factor_manifolds[:-1], directions[:-1], strict=True):
            scale = self._factor_scale(factor, direction)
            out.append(direction * scale[..., None, None])
            total = total * scale
        out.append(directions[-1] / total[..., None, None])
        return self._fix_sign(out)

    @staticmethod
    def _factor_scale(factor: Manifold, direction: torch.Tensor) -> torch.Tensor:
        """Scale of a unit-norm factor direction: unit-marginal or orthogonal candidate."""
        n = direction.shape[-1]
        total = direction.sum(dim=(-2, -1))
        marginal = n / torch.where(total == 0, torch.ones_like(total), total)
        orthogonal = torch.full_like(total, math.sqrt(n))
        errors = [factor.constraint_error(direction * s[..., None, None]).nan_to_num(math.inf)
                  for s in (marginal, orthogonal)]
        return torch.where((errors[0] <= errors[1]) & (total != 0), marginal, orthogonal)

    def _fix_sign(self, factors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Move a wrong sign of the last factor (``−A_K`` fits its set, ``A_K`` not) onto the
        first earlier factor whose set is symmetric under ``A ↦ −A`` (orthogonal groups)."""
        def error(m, a):
            return m.constraint_error(a).nan_to_num(math.inf)

        last, last_m = factors[-1], self.factor_manifolds[-1]
        wrong = error(last_m, -last) < error(last_m, last)
        todo = wrong
        for k, (m, a) in enumerate(zip(self.factor_manifolds[:-1], factors[:-1], strict=True)):
            tol = 10 * default_atol(a.dtype)
            flip = todo & (error(m, -a) <= torch.clamp(error(m, a), min=tol))
            factors[k] = torch.where(flip[..., None, None], -a, a)
            todo = todo & ~flip
        factors[-1] = torch.where((wrong & ~todo)[..., None, None], -last, last)
        return factors

    def _others(self, factors: Sequence[torch.Tensor], k: int, middle: torch.Tensor):
        return kron(*factors[:k], middle, *factors[k + 1:])

    def _contract(self, u: torch.Tensor, factors: Sequence[torch.Tensor], k: int) -> torch.Tensor:
        """``C_k(u)``: contract ``u`` (``(..., N, N)``) with every factor but the ``k``-th."""
        kk = len(self.sizes)
        rows, cols = ascii_letters[:kk], ascii_letters[kk:2 * kk]
        operands = [u.reshape(*u.shape[:-2], *self.sizes, *self.sizes)]
        terms = [f"...{rows}{cols}"]
        for j, a in enumerate(factors):
            if j != k:
                operands.append(a)
                terms.append(f"...{rows[j]}{cols[j]}")
        return torch.einsum(",".join(terms) + f"->...{rows[k]}{cols[k]}", *operands)

    def _components(self, factors: Sequence[torch.Tensor], *vectors: torch.Tensor
                    ) -> list[list[torch.Tensor]]:
        """Tangent components ``ξ_k(v) ∈ T_{A_k}M_k`` of each vector (class docstring).

        Returns one list of ``K`` components per vector. ``P_k`` is linear, so
        ``P_k(w − r A_k) = P_k w − r P_k A_k``: one ``M_k.proju`` call per factor covers
        ``A_k`` and every ``w``.
        """
        sq_norms = [(a * a).sum(dim=(-2, -1)) for a in factors]
        out: list[list[torch.Tensor]] = [[] for _ in vectors]
        for k, (factor, a) in enumerate(zip(self.factor_manifolds, factors, strict=True)):
            others = math.prod(s for j, s in enumerate(sq_norms) if j != k)
            ws = [self._contract(v, factors, k) / others[..., None, None] for v in vectors]
            shape = torch.broadcast_shapes(a.shape, *(w.shape for w in ws))
            projected = factor.proju(a, torch.stack([t.expand(shape) for t in (a, *ws)]))
            normal = a - projected[0]
            normal_sq = (normal * normal).sum(dim=(-2, -1))
            for parts, w, pw in zip(out, ws, projected[1:], strict=True):
                radial = ((w - pw) * normal).sum(dim=(-2, -1)) / normal_sq
                parts.append(pw - radial[..., None, None] * projected[0])
        return out

    # -- Riemannian mode --------------------------------------------------------------------
    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """``⊗_k M_k.projx(A_k)`` of the (rescaled) nearest Kronecker factors of ``x``."""
        factors = self.factors(x)
        return kron(*(m.projx(a) for m, a in zip(self.factor_manifolds, factors, strict=True)))

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        factors = self.factors(x)
        (parts,) = self._components(factors, u)
        return sum(self._others(factors, k, p) for k, p in enumerate(parts))

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        factors = self.factors(x)
        return sum(
            self._others(factors, k, m.egrad2rgrad(a, self._contract(u, factors, k)))
            for k, (m, a) in enumerate(zip(self.factor_manifolds, factors, strict=True))
        )

    def ehess2rhess(self, x: torch.Tensor, egrad: torch.Tensor, ehess: torch.Tensor,
                    u: torch.Tensor) -> torch.Tensor:
        """The Hessian of ``F(A₁, …, A_K) = f(⊗A_k)`` on the product of the factors (product
        metric): component ``k`` is ``M_k.ehess2rhess(A_k, C_k(G), Ḃ_k, ξ_k)`` with
        ``C_k(G) = ∂F/∂A_k`` and its derivative along ``ξ``,
        ``Ḃ_k = C_k(ehess) + Σ_{j≠k} C_k(G; A_j → ξ_j)`` (the contraction with factor ``j``
        replaced by its component ``ξ_j``)."""
        factors = self.factors(x)
        (parts,) = self._components(factors, u)
        out = 0
        for k, (m, a) in enumerate(zip(self.factor_manifolds, factors, strict=True)):
            moved = sum(self._contract(egrad, [*factors[:j], parts[j], *factors[j + 1:]], k)
                        for j in range(len(factors)) if j != k)
            dgrad = self._contract(ehess, factors, k) + moved
            hess = m.ehess2rhess(a, self._contract(egrad, factors, k), dgrad, parts[k])
            out = out + self._others(factors, k, hess)
        return out

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``⊗_k M_k.retr(A_k, ξ_k(u))``: every factor moves along its own component."""
        factors = self.factors(x)
        (parts,) = self._components(factors, u)
        return kron(*(m.retr(a, p)
                      for m, a, p in zip(self.factor_manifolds, factors, parts, strict=True)))

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``⊗_k M_k.expmap(A_k, ξ_k(u))``: exact for the product metric (geodesics of a
        product are products of geodesics); raises if a factor has no exact map."""
        factors = self.factors(x)
        (parts,) = self._components(factors, u)
        return kron(*(m.expmap(a, p)
                      for m, a, p in zip(self.factor_manifolds, factors, parts, strict=True)))

    no_exact_maps = ("logmap/dist of a Kronecker product are not implemented: the factors of "
                     "a point are determined only up to signs (−A)⊗(−B) = A⊗B")

    def inner(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor | None = None, *,
              keepdim: bool = False) -> torch.Tensor:
        """Product metric ``Σ_k ⟨ξ_k(u), ξ_k(v)⟩_{M_k}``; shape ``x.shape[:-2]``."""
        factors = self.factors(x)
        parts_u, parts_v = self._components(factors, u, u if v is None else v)
        out = sum(m.inner(a, pu, pv) for m, a, pu, pv
                  in zip(self.factor_manifolds, factors, parts_u, parts_v, strict=True))
        return out[..., None, None] if keepdim else out

    def random(self, *size, dtype=None, device=None) -> torch.Tensor:
        """``⊗_k M_k.random(...)``: independent random factors."""
        batch = self._sample_size(size, dtype)[:-2]
        return kron(*(m.random(*batch, n, n, dtype=dtype, device=device)
                      for m, n in zip(self.factor_manifolds, self.sizes, strict=True)))

    # -- parametrization mode ---------------------------------------------------------------
    def parametrize_factors(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Factor points ``M_k.parametrize(z_k)`` for ``z`` of shape ``(..., *param_shape)``.

        Computed in at least float32 and returned in ``z``'s dtype.
        """
        z = check_tensor(z, "z", trailing=self.param_shape)
        work = z if z.dtype in (torch.float32, torch.float64) else z.float()
        chunks = torch.split(work, self._param_sizes, dim=-1)
        return [m.parametrize(c.reshape(*c.shape[:-1], *m.param_shape))
                for m, c in zip(self.factor_manifolds, chunks, strict=True)]

    def parametrize(self, z: torch.Tensor) -> torch.Tensor:
        """``⊗_k M_k.parametrize(z_k)``, shape ``(..., N, N)``."""
        return kron(*self.parametrize_factors(z)).to(z.dtype)

    def identity_param(self, *, dtype=None, device=None) -> torch.Tensor:
        """The factors' identity parameters, flattened and concatenated."""
        return torch.cat([m.identity_param(dtype=dtype, device=device).reshape(-1)
                          for m in self.factor_manifolds])

    def as_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """The ``n × n`` mixer ``⊗_k M_k.as_matrix(A_k)``: ``x`` itself unless a factor reads
        its points out (then the factors are recovered, see :meth:`factors`)."""
        if self._points_are_mixers:
            return x
        factors = self.factors(x)
        return kron(*(m.as_matrix(a) for m, a in zip(self.factor_manifolds, factors, strict=True)))

    def apply(self, x: torch.Tensor | Sequence[torch.Tensor], streams: torch.Tensor
              ) -> torch.Tensor:
        """Mix ``streams`` ``(..., n, C)`` by a point: a dense ``(..., N, N)`` point, or the
        list of factor points from :meth:`parametrize_factors`.

        For a list the cheaper route is taken: mode products (:meth:`apply_factors`, ``K``
        passes over the streams, ``Σ n_k`` multiply-adds per element) once ``n`` exceeds
        ``MODE_PRODUCT_BALANCE · K``, else the ``n × n`` mixer is formed (``n²`` per token)
        and applied by one matmul (one pass, ``n`` multiply-adds per element) -- faster at
        every ``n ≤ 128`` measured on CPU, slower at 256 (``benchmarks/kronecker_apply.py``).
        """
        if isinstance(x, torch.Tensor):
            return super().apply(x, streams)
        if self.n > MODE_PRODUCT_BALANCE * len(self.sizes):
            return self.apply_factors(x, streams)
        return kron(*self._mixers(x)) @ streams

    def apply_factors(self, factors: Sequence[torch.Tensor], streams: torch.Tensor
                      ) -> torch.Tensor:
        """``(H₁ ⊗ … ⊗ H_K) @ streams``, ``H_k = M_k.as_matrix(A_k)``, by mode products.

        ``factors[k]`` is a point of ``M_k`` (``(..., N_k, N_k)``, e.g. from
        :meth:`parametrize_factors`), ``streams`` ``(..., n, C)``; the ``n × n`` mixer is
        never formed (:func:`mhckit.functional.kron_apply`).
        """
        check_tensor(streams, "streams", finite=False)
        return kron_apply(self._mixers(factors), streams)

    def _mixers(self, factors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Checked factor points, read out as their ``n_k × n_k`` mixers."""
        if isinstance(factors, torch.Tensor) or len(factors) != len(self.sizes):
            raise ValueError(f"factors must be a sequence of {len(self.sizes)} factor points, "
                             f"got {type(factors).__name__} of length {len(factors)}")
        mixers = []
        for k, (m, a) in enumerate(zip(self.factor_manifolds, factors, strict=True)):
            check_tensor(a, f"factors[{k}]", trailing=m.shape, finite=False)
            mixers.append(m.as_matrix(a))
        return mixers

    def constraint_error(self, x: torch.Tensor) -> torch.Tensor:
        """Largest of ``|x − ⊗A_k|`` and the factors' constraint errors, per matrix."""
        x = check_tensor(x, "x", trailing=self.shape)
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        finite = torch.isfinite(x).all(dim=-1).all(dim=-1)
        x = torch.where(finite[..., None, None], x, torch.zeros_like(x))
        factors = self._factors(x)
        err = (x - kron(*factors)).abs().amax(dim=(-2, -1))
        for m, a in zip(self.factor_manifolds, factors, strict=True):
            err = torch.maximum(err, m.constraint_error(a))
        return torch.where(finite, err, torch.full_like(err, math.inf))

    def _check_vector_on_tangent(self, x, u, *, atol=None, rtol=None):
        ok, reason = self._check_shape(u.shape, "u")
        if not ok:
            return ok, reason
        tol = 1e-5 if atol is None else atol
        err = float((self.proju(x, u) - u).abs().max())
        if err > tol:
            return False, f"u is {err:.3e} away from the tangent space, exceeds atol {tol:.1e}"
        return True, None

    def extra_repr(self) -> str:
        return "sizes=" + "x".join(map(str, self.sizes))
