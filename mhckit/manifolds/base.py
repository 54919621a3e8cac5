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

Argument checking shared by all subclasses lives here, so that a bad argument raises a
``ValueError``/``TypeError`` that names it, says what was expected and what came.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import geoopt
import torch

from mhckit.functional.value_checks import value_checks_enabled

__all__ = ["Manifold", "SquareManifold", "default_atol", "check_tensor", "frobenius_inner"]


def default_atol(dtype: torch.dtype) -> float:
    """Constraint tolerance by dtype (DESIGN.md: 1e-5 in float32, 1e-12 in float64)."""
    return 1e-12 if dtype == torch.float64 else 1e-5


def check_tensor(x: object, name: str, *, trailing: tuple[int, ...] | None = None,
                 finite: bool = True) -> torch.Tensor:
    """Validate a tensor argument and return it.

    Raises ``TypeError`` if ``x`` is not a floating-point tensor, ``ValueError`` if its
    trailing dimensions differ from ``trailing`` or (with ``finite``) if it holds NaN/inf.
    The NaN/inf check reads a value back to the host, so it is skipped where
    :func:`~mhckit.functional.value_checks_enabled` says so (while ``torch.compile``
    traces, and inside ``value_checks(False)``).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not (x.is_floating_point() or x.is_complex()):
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    if trailing is not None:
        k = len(trailing)
        if x.dim() < k or tuple(x.shape[x.dim() - k:]) != tuple(trailing):
            raise ValueError(
                f"{name} must have trailing shape {tuple(trailing)}, got shape {tuple(x.shape)}"
            )
    if finite and value_checks_enabled() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite, got NaN or inf entries")
    return x


def check_size(value: object, name: str, *, minimum: int = 1) -> int:
    """Validate an integer size argument (``n``, ``p``, ``s``...)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


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
    """

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

    def num_parameters(self, width: int = 1) -> int:
        """Per-token parameters of a dynamic mixer of width ``C``: ``n·C`` inputs each."""
        return math.prod(self.param_shape) * self.n * width

    def sublayer_parameters(self, width: int = 1) -> int:
        """Per-token projection size of a whole dynamic hyper-connection of width ``C``.

        ``n·C·(prod(param_shape) + 2n)``: the ``H_res`` logits plus ``H_pre`` and ``H_post``
        (``n`` each), all read from the ``n·C`` flattened streams -- the count the papers
        report, e.g. ``96C`` for mHC and ``128C`` for mHC-lite at ``n = 4``.
        """
        return self.n * width * (math.prod(self.param_shape) + 2 * self.n)

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
        tol = self.constraint_atol(x.dtype) * 10 if atol is None else atol
        err = float(self.constraint_error(x).max()) if x.numel() else 0.0
        if not math.isfinite(err) or err > tol:
            return False, f"constraint error {err:.3e} exceeds atol {tol:.1e}"
        return True, None

    def _sample_size(self, size: tuple) -> tuple[int, ...]:
        """``size`` for :meth:`random` (default :attr:`shape`), checked to end in ``shape``."""
        size = tuple(size) or self.shape
        ok, reason = self._check_shape(size, "size")
        if not ok:
            raise ValueError(reason)
        return size

    def _check_shape(self, shape, name):
        if len(shape) < len(self.shape) or tuple(shape[-len(self.shape):]) != self.shape:
            return False, f"{name} must have trailing shape {self.shape}, got {tuple(shape)}"
        return True, None

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """No closed-form exponential map is used in mhckit; the retraction stands in."""
        return self.retr(x, u)

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Vector transport by projection onto the tangent space at ``y``."""
        return self.proju(y, v)

    def retr_transp(self, x, u, v):
        y = self.retr(x, u)
        return y, self.transp(x, y, v)

    expmap_transp = retr_transp

    def transp_follow_retr(self, x, u, v):
        return self.transp(x, self.retr(x, u), v)

    transp_follow_expmap = transp_follow_retr

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
