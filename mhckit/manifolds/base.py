"""The manifold contract of mhckit.

Every constraint set is one subclass of :class:`Manifold`, itself a subclass of
:class:`geoopt.Manifold`, so it works with ``geoopt.ManifoldParameter`` and any geoopt
optimizer as well as ours (``../shared/DESIGN.md``, "A manifold, two ways to use it").

On top of geoopt's contract (``projx``, ``proju``, ``egrad2rgrad``, ``retr``, ``transp``,
``inner``, ``random``, ``origin``) a mhckit manifold offers

* ``shape`` -- the shape of one point, e.g. ``(n, n)``;
* ``param_shape`` / ``parametrize(z)`` -- the unconstrained tensor ``z`` of shape
  ``(..., *param_shape)`` and the differentiable, batched map onto the set (the mHC way);
* ``identity_param()`` -- a ``z`` whose image is the identity mixer (or a point near it)
  *and* at which the gradient of ``parametrize`` does not vanish;
* ``as_matrix(x)`` -- the ``n x n`` mixing matrix a point stands for (``x`` itself for square
  sets, ``U Uᵀ`` for Grassmann);
* ``constraint_error(x)`` -- the largest violation of the defining equations, per matrix;
* ``num_parameters(width)`` -- the per-token projection size for a mixer of width ``C``.

Argument checking shared by all subclasses (:mod:`mhckit.functional.validation`, re-exported
here) makes a bad argument raise a ``ValueError``/``TypeError`` that names it, says what was
expected and what came: a complex or integer ``z``, an integer ``dtype`` for ``random``, a
non-finite point given to ``constraint_error``.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import geoopt
import torch

from mhckit.functional.autocast import without_autocast
from mhckit.functional.validation import check_dtype, check_size, check_tensor

__all__ = ["Manifold", "SquareManifold", "default_atol", "check_tensor", "check_size",
           "check_dtype", "frobenius_inner", "CAYLEY_BOUND"]


def default_atol(dtype: torch.dtype) -> float:
    """Constraint tolerance by dtype (DESIGN.md: 1e-5 in float32, 1e-12 in float64)."""
    return 1e-12 if dtype == torch.float64 else 1e-5


#: Largest ``|z|`` entry the Cayley-based parametrizations (Stiefel, Grassmann,
#: Orthostochastic, SpectralSphere) accept. Their one linear solve holds ``I + BᵀB − Ω``
#: (or ``I − A``); beyond about ``1e7`` the ``I`` is lost to rounding, the matrix turns
#: singular (``_LinAlgError``) or the frame silently stops being orthonormal (measured:
#: ``Stiefel(4, 2)`` at ``1e8`` has ``|XᵀX − I| ≈ 5e11``). So a larger ``z`` is a
#: ``ValueError`` naming it, never a wrong point.
CAYLEY_BOUND = 1e6


def frobenius_inner(u: torch.Tensor, v: torch.Tensor | None = None, *,
                    keepdim: bool = False) -> torch.Tensor:
    """``Σ u ⊙ v`` over the last two dimensions (``v = u`` when omitted): the Euclidean
    (Frobenius) metric of the sets that use it."""
    v = u if v is None else v
    return (u * v).sum(dim=(-2, -1), keepdim=keepdim)


class Manifold(geoopt.Manifold):
    """Base class of every mhckit constraint set (see the module docstring).

    Subclasses set ``name`` and implement, in this order, ``projx``, ``proju``,
    ``egrad2rgrad``, ``retr``, ``transp``, ``inner``, ``random``, ``origin``,
    ``parametrize``, ``identity_param``, ``constraint_error`` and the properties
    ``shape`` and ``param_shape``.

    Every subclass's ``parametrize`` and ``as_matrix`` run with autocast off (wrapped when
    the class is made, :func:`~mhckit.functional.autocast.without_autocast`): the map onto
    the set and the mixer it gives are computed in ``z``'s precision (float32 at least)
    under a bf16 ``torch.autocast`` too, as mHC computes its Sinkhorn, and a user-built set
    gets the same.
    """

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("parametrize", "as_matrix"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "__isabstractmethod__", False) \
                    and not getattr(method, "without_autocast", False):
                setattr(cls, name, without_autocast(method))

    ndim = 2
    reversible = False
    #: ``False`` for sets reached by an iteration stopped at a tolerance ``tol`` (Sinkhorn):
    #: their points meet the constraints to ``tol``, not to rounding (``constraint_atol``).
    exact: bool = True
    tol: float = 0.0

    # -- shapes ---------------------------------------------------------------------------
    @property
    @abstractmethod
    def shape(self) -> tuple[int, ...]:
        """Shape of one point, e.g. ``(n, n)``."""

    @property
    @abstractmethod
    def param_shape(self) -> tuple[int, ...]:
        """Shape of one unconstrained input ``z`` of :meth:`parametrize`."""

    @property
    def n(self) -> int:
        """Size of the mixing matrix :meth:`as_matrix` returns."""
        return self.shape[-2]

    @property
    def dynamic_groups(self) -> tuple[int, ...]:
        """Sizes of the leading segments of ``z`` that a dynamic mixer moves per token, each
        with its own learned gate (default: all of ``z``, one gate). Entries of ``z`` after
        them are static only (e.g. sHC's rotation scales ``γ``, :class:`SpectralSphere`)."""
        return (math.prod(self.param_shape),)

    def num_parameters(self, width: int = 1) -> int:
        """Per-token parameters of a dynamic mixer of width ``C``: ``n·C`` inputs for each
        per-token entry of ``z`` (:attr:`dynamic_groups`)."""
        return sum(self.dynamic_groups) * self.n * width

    def sublayer_parameters(self, width: int = 1) -> int:
        """Per-token projection size of a whole dynamic hyper-connection of width ``C``.

        ``n·C·(prod(param_shape) + 2n)``: the ``H_res`` logits plus ``H_pre`` and ``H_post``
        (``n`` each), all read from the ``n·C`` flattened streams -- the count the papers
        report, e.g. ``96C`` for mHC and ``128C`` for mHC-lite at ``n = 4``.
        """
        return self.n * width * (sum(self.dynamic_groups) + 2 * self.n)

    # -- the two modes --------------------------------------------------------------------
    @abstractmethod
    def parametrize(self, z: torch.Tensor) -> torch.Tensor:
        """Map ``z`` of shape ``(..., *param_shape)`` to a point of shape ``(..., *shape)``."""

    @abstractmethod
    def identity_param(self, *, dtype: torch.dtype | None = None,
                       device: torch.device | str | None = None) -> torch.Tensor:
        """A ``z`` of ``param_shape`` whose image is (near) the identity mixer, with a
        non-vanishing gradient of :meth:`parametrize` there."""

    def as_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """The ``n x n`` mixing matrix that point ``x`` stands for (``x`` by default)."""
        return x

    def apply(self, x: torch.Tensor, streams: torch.Tensor) -> torch.Tensor:
        """Mix ``streams`` of shape ``(..., n, C)`` by the point ``x``: ``as_matrix(x) @ streams``.
        """
        return self.as_matrix(x) @ streams

    @abstractmethod
    def constraint_error(self, x: torch.Tensor) -> torch.Tensor:
        """Largest absolute violation of the set's defining equations, shape ``x.shape[:-2]``."""

    def constraint_atol(self, dtype: torch.dtype) -> float:
        """Constraint error the points this set returns meet: ``default_atol(dtype)``, plus
        ``tol`` for an inexact set."""
        return default_atol(dtype) + (0.0 if self.exact else self.tol)

    # -- geoopt plumbing ------------------------------------------------------------------
    def _check_point_on_manifold(self, x, *, atol=None, rtol=None):
        ok, reason = self._check_shape(x.shape, "x")
        if not ok:
            return ok, reason
        if x.numel() and not bool(torch.isfinite(x).all()):
            return False, "x is not finite (NaN or inf entries)"
        tol = self.constraint_atol(x.dtype) * 10 if atol is None else atol
        err = float(self.constraint_error(x).max()) if x.numel() else 0.0
        if not math.isfinite(err) or err > tol:
            return False, f"constraint error {err:.3e} exceeds atol {tol:.1e}"
        return True, None

    def _sample_size(self, size: tuple, dtype: torch.dtype | None = None) -> tuple[int, ...]:
        """``size`` for :meth:`random` (default :attr:`shape`), checked to end in ``shape``;
        ``dtype`` checked to be ``None`` or a real floating dtype.

        Both ``random(2, 3, 3)`` and geoopt's ``random((2, 3, 3))`` are accepted."""
        check_dtype(dtype)
        size = geoopt.utils.size2shape(*size) if size else self.shape
        ok, reason = self._check_shape(size, "size")
        if not ok:
            raise ValueError(reason)
        return size

    def _check_shape(self, shape, name):
        if len(shape) < len(self.shape) or tuple(shape[-len(self.shape):]) != self.shape:
            return False, f"{name} must have trailing shape {self.shape}, got {tuple(shape)}"
        return True, None

    # -- exact geodesic maps (issue 17): a retraction is never called an exponential ------
    #: why this set has no exact exponential / logarithm here (subclasses with closed forms
    #: override ``expmap``/``logmap``/``dist``).
    no_exact_maps = "no closed-form geodesics are implemented for this set"

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The Riemannian exponential; raises where no exact map is implemented (use ``retr``)."""
        raise NotImplementedError(
            f"{self.name}.expmap: {self.no_exact_maps}; use retr (a retraction, not the "
            "exponential)")

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The Riemannian logarithm; raises where no exact map is implemented."""
        raise NotImplementedError(f"{self.name}.logmap: {self.no_exact_maps}")

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        """Geodesic distance; raises where no exact map is implemented."""
        raise NotImplementedError(f"{self.name}.dist: {self.no_exact_maps}")

    def expmap_transp(self, x, u, v):
        y = self.expmap(x, u)
        return y, self.transp(x, y, v)

    def transp_follow_expmap(self, x, u, v):
        return self.transp(x, self.expmap(x, u), v)

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Vector transport by projection onto the tangent space at ``y``."""
        return self.proju(y, v)

    def retr_transp(self, x, u, v):
        y = self.retr(x, u)
        return y, self.transp(x, y, v)

    def transp_follow_retr(self, x, u, v):
        return self.transp(x, self.retr(x, u), v)

    def origin(self, *size, dtype=None, device=None, seed=None) -> torch.Tensor:
        """The identity mixer broadcast to ``size`` (a point of every square set here)."""
        return self.parametrize(self.identity_param(dtype=dtype, device=device)).expand(
            *(size or self.shape)).clone()

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class SquareManifold(Manifold):
    """A set of ``n × n`` mixers reached from ``n × n`` logits (``shape = param_shape``)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self._size = check_size(n, "n")

    @property
    def shape(self) -> tuple[int, int]:
        return (self._size, self._size)

    @property
    def param_shape(self) -> tuple[int, int]:
        return (self._size, self._size)
