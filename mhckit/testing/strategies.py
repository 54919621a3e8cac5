"""Hypothesis strategies over any mhckit manifold, for property tests in a user's suite::

    from hypothesis import given
    from mhckit.manifolds import Birkhoff
    from mhckit.testing.strategies import points

    @given(points(Birkhoff(4)))
    def test_rows_sum_to_one(x):
        assert (x.sum(-1) - 1).abs().max() < 1e-5

Points are drawn as ``parametrize(z)`` of unconstrained ``z`` (:func:`unconstrained`), so a
failing example shrinks towards ``z = 0`` -- a simple point, usually near the centre of the
set -- and every point the parametrization reaches, extreme logits included, can be drawn.
Tensors are built from hypothesis' numpy arrays (float64 by default).

Hypothesis is an optional dependency of mhckit (the ``testing`` extra): importing this
module without it raises an ``ImportError`` saying how to install it.
"""

from __future__ import annotations

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as error:  # pragma: no cover -- exercised without hypothesis installed
    raise ImportError(
        "mhckit.testing.strategies needs hypothesis, an optional dependency: "
        "pip install hypothesis (or pip install 'mhckit[testing]')") from error

import numpy as np
import torch

from mhckit.manifolds.base import Manifold, check_size

__all__ = ["unconstrained", "points", "tangent_vectors", "mixer_stacks"]

#: Largest logit magnitude drawn by default: ``1e4`` saturates every softmax/Sinkhorn/tanh
#: map here, which is where float32 constraint errors used to hide.
EXTREME = 1e4
#: Default bound of :func:`points` for an inexact set (Sinkhorn's): beyond it Sinkhorn may
#: stop at ``max_iter`` short of ``tol`` (measured: marginal error 0.5 for ``Birkhoff(4)``
#: at logits of 1e4, 100 iterations; ``<= tol`` for every draw up to 20), so the drawn
#: "points" would not be on the set. Probe extreme logits with :func:`unconstrained`.
INEXACT_LOGIT = 20.0


def _floats(limit: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=-limit, max_value=limit, allow_nan=False,
                     allow_infinity=False, width=64)


def _tensors(shape: tuple[int, ...], limit: float, dtype: torch.dtype
             ) -> st.SearchStrategy[torch.Tensor]:
    arrays = hnp.arrays(np.float64, shape, elements=_floats(limit))
    return arrays.map(lambda a: torch.from_numpy(a).to(dtype))


def _check_manifold(manifold: object) -> Manifold:
    if not isinstance(manifold, Manifold):
        raise TypeError(f"manifold must be a mhckit.manifolds.Manifold, "
                        f"got {type(manifold).__name__}")
    return manifold


def unconstrained(manifold: Manifold, *, batch_shape: tuple[int, ...] = (),
                  max_logit: float = EXTREME, dtype: torch.dtype = torch.float64
                  ) -> st.SearchStrategy[torch.Tensor]:
    """Inputs ``z`` of ``parametrize``: shape ``(*batch_shape, *param_shape)``, finite
    entries in ``[−max_logit, max_logit]`` (hypothesis favours the extremes and 0)."""
    manifold = _check_manifold(manifold)
    return _tensors((*batch_shape, *manifold.param_shape), max_logit, dtype)


def points(manifold: Manifold, *, batch_shape: tuple[int, ...] = (),
           max_logit: float | None = None, dtype: torch.dtype = torch.float64
           ) -> st.SearchStrategy[torch.Tensor]:
    """Points ``parametrize(z)`` of the set, shape ``(*batch_shape, *shape)``, ``z`` from
    :func:`unconstrained` with entries up to ``max_logit`` (default :data:`EXTREME`, or
    :data:`INEXACT_LOGIT` for an inexact set)."""
    manifold = _check_manifold(manifold)
    if max_logit is None:
        max_logit = EXTREME if manifold.exact else INEXACT_LOGIT
    return unconstrained(manifold, batch_shape=batch_shape, max_logit=max_logit,
                         dtype=dtype).map(manifold.parametrize)


def tangent_vectors(manifold: Manifold, x: torch.Tensor, *, max_entry: float = 10.0
                    ) -> st.SearchStrategy[torch.Tensor]:
    """Tangent vectors ``proju(x, u)`` at the point(s) ``x`` for ``u`` with entries in
    ``[−max_entry, max_entry]``, in ``x``'s dtype."""
    manifold = _check_manifold(manifold)
    return _tensors(tuple(x.shape), max_entry, x.dtype).map(lambda u: manifold.proju(x, u))


def mixer_stacks(manifold: Manifold, depth: int, *, max_logit: float | None = None,
                 dtype: torch.dtype = torch.float64) -> st.SearchStrategy[torch.Tensor]:
    """``depth`` mixers ``as_matrix(x_l)`` of independent points, shape ``(depth, n, n)``:
    the ``H_res`` of a ``depth``-layer network, whose product is the composite mixer."""
    manifold = _check_manifold(manifold)
    check_size(depth, "depth")
    return points(manifold, batch_shape=(depth,), max_logit=max_logit,
                  dtype=dtype).map(manifold.as_matrix)
