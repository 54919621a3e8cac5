"""``assert_manifold``: the whole manifold contract of mhckit, runnable on any set.

Every built-in manifold passes it (``tests/test_manifold_harness.py`` runs it over all of
them); a user-built one -- a subclass of :class:`mhckit.manifolds.Manifold` or a composite
such as ``Kronecker(Orthostochastic(2, s=2), MyManifold(3))`` -- is checked in one line::

    from mhckit.testing import assert_manifold
    assert_manifold(Kronecker(Orthostochastic(2, s=2), PermutationHull(3)))

Each property is one function of ``(manifold, dtype, batch)`` returning the failures it
found; :data:`PROPERTIES` lists them by name. Tolerances come from the manifold:
``constraint_atol(dtype)`` (1e-5 float32, 1e-12 float64, plus ``tol`` for an inexact set
such as Sinkhorn's) for points, ``√eps`` relative for tangent-space identities, and the
slope tests of :mod:`mhckit.testing.checks` (float64 only: float32 leaves two decades of
usable steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from mhckit.manifolds.base import Manifold
from mhckit.testing.checks import check_gradient, check_retraction, check_tangent

__all__ = ["Failure", "PROPERTIES", "assert_manifold"]


@dataclass(frozen=True)
class Failure:
    """One broken property: what, where, the measured error and the tolerance it exceeds."""

    property: str
    dtype: torch.dtype
    detail: str
    error: float
    tolerance: float

    def __str__(self) -> str:
        return (f"{self.property} [{str(self.dtype).removeprefix('torch.')}]: {self.detail} "
                f"(measured {self.error:.3e}, tolerance {self.tolerance:.1e})")


Property = Callable[[Manifold, torch.dtype, tuple[int, ...]], list[Failure]]


def _rtol(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps ** 0.5


def _point_tol(m: Manifold, dtype: torch.dtype, x: torch.Tensor | None = None) -> float:
    scale = 1.0 if x is None else 1.0 + float(x.abs().max())
    return 10 * m.constraint_atol(dtype) * scale


def _tangent(m: Manifold, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    return m.proju(x, scale * torch.randn(x.shape, dtype=x.dtype, device=x.device))


def _point_failures(name: str, m: Manifold, x: torch.Tensor, dtype: torch.dtype,
                    shape: Sequence[int] | None = None) -> list[Failure]:
    """``x`` has ``dtype``, ``shape``, finite entries and meets the constraints."""
    atol = m.constraint_atol(dtype)
    if x.dtype != dtype:
        return [Failure(name, dtype, f"returned dtype {x.dtype}", math.inf, 0.0)]
    if shape is not None and tuple(x.shape) != tuple(shape):
        return [Failure(name, dtype, f"returned shape {tuple(x.shape)}, expected "
                        f"{tuple(shape)}", math.inf, 0.0)]
    if not bool(torch.isfinite(x).all()):
        return [Failure(name, dtype, "returned NaN/inf entries", math.inf, atol)]
    err = m.constraint_error(x)
    if tuple(err.shape) != tuple(x.shape[:-len(m.shape)]):
        return [Failure(name, dtype, f"constraint_error has shape {tuple(err.shape)}, "
                        f"expected the batch shape {tuple(x.shape[:-len(m.shape)])}",
                        math.inf, 0.0)]
    worst = float(err.max()) if err.numel() else 0.0
    if not worst <= atol:
        index = tuple(int(i) for i in torch.nonzero(err == err.max())[0]) if err.dim() else ()
        return [Failure(name, dtype, f"point {index} is off the set", worst, atol)]
    return []


def _close(name: str, dtype: torch.dtype, what: str, a: torch.Tensor, b: torch.Tensor,
           tolerance: float) -> list[Failure]:
    if a.shape != b.shape:
        return [Failure(name, dtype, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}",
                        math.inf, tolerance)]
    err = float((a - b).abs().max()) if a.numel() else 0.0
    scale = 1.0 + float(b.abs().max()) if b.numel() else 1.0
    return [] if err <= tolerance * scale else [Failure(name, dtype, what, err,
                                                        tolerance * scale)]


# -- the properties ---------------------------------------------------------------------------
def random_on_set(m, dtype, batch):
    """``random(*batch, *shape)`` and geoopt's ``random((*batch, *shape))`` lie on the set."""
    size = (*batch, *m.shape)
    return (_point_failures("random", m, m.random(*size, dtype=dtype), dtype, size)
            + _point_failures("random(tuple)", m, m.random(size, dtype=dtype), dtype, size))


def projx_on_set(m, dtype, batch):
    """``projx`` maps a perturbed point onto the set and fixes points of the set."""
    x = m.random(*batch, *m.shape, dtype=dtype)
    out = _point_failures("projx", m, m.projx(x + 1e-2 * torch.randn_like(x)), dtype, x.shape)
    return out + _close("projx", dtype, "projx(x) moved a point of the set", m.projx(x), x,
                        _point_tol(m, dtype))


def retr_on_set(m, dtype, batch):
    """``retr(x, u)`` of a tangent ``u`` lies on the set; ``retr(x, 0) = x``."""
    x = m.random(*batch, *m.shape, dtype=dtype)
    out = _point_failures("retr", m, m.retr(x, _tangent(m, x, 0.1)), dtype, x.shape)
    return out + _close("retr", dtype, "retr(x, 0) != x", m.retr(x, torch.zeros_like(x)), x,
                        _point_tol(m, dtype))


def parametrize_on_set(m, dtype, batch):
    """``parametrize`` of unit and extreme (1e4) logits: finite points of the set (extreme
    logits may stop short of ``tol`` for an inexact set)."""
    out = []
    for scale in (1.0, 1e4):
        z = scale * torch.randn(*batch, *m.param_shape, dtype=dtype)
        x = m.parametrize(z)
        name = f"parametrize(|z|~{scale:g})"
        if scale == 1.0 or m.exact:
            out += _point_failures(name, m, x, dtype, (*batch, *m.shape))
        elif not bool(torch.isfinite(x).all()):
            out.append(Failure(name, dtype, "returned NaN/inf entries", math.inf, 0.0))
    return out


def identity_param_on_set(m, dtype, batch):
    """``parametrize(identity_param())`` lies on the set with a non-vanishing gradient."""
    z = m.identity_param(dtype=dtype).requires_grad_(True)
    if tuple(z.shape) != tuple(m.param_shape):
        return [Failure("identity_param", dtype, f"shape {tuple(z.shape)}, expected "
                        f"{tuple(m.param_shape)}", math.inf, 0.0)]
    x = m.parametrize(z)
    out = _point_failures("identity_param", m, x.detach(), dtype, m.shape)
    if z.numel():
        (grad,) = torch.autograd.grad((torch.randn(x.shape, dtype=dtype) * x).sum(), z)
        size = float(grad.abs().max())
        if not size > 1e-3:
            out.append(Failure("identity_param", dtype, "gradient of parametrize vanishes there",
                               size, 1e-3))
    return out


def proju_tangent_idempotent(m, dtype, batch):
    """``proju(x, u)`` is tangent and ``proju`` is idempotent."""
    x = m.random(*m.shape, dtype=dtype)
    check = check_tangent(m, x, torch.randn(x.shape, dtype=dtype))
    out = [] if check.tangent else [Failure("proju tangent", dtype, str(check.tangent_reason),
                                            math.inf, 0.0)]
    if not check.idempotence_error <= check.rtol:
        out.append(Failure("proju idempotent", dtype, "‖P(Pu) − Pu‖/‖Pu‖",
                           check.idempotence_error, check.rtol))
    return out


def egrad2rgrad_metric_consistent(m, dtype, batch):
    """``inner(x, egrad2rgrad(x, g), v) = ⟨g, v⟩`` for tangent ``v``."""
    x = m.random(*m.shape, dtype=dtype)
    check = check_tangent(m, x, torch.randn(x.shape, dtype=dtype),
                          torch.randn(x.shape, dtype=dtype))
    if check.metric_error <= check.rtol:
        return []
    return [Failure("egrad2rgrad metric", dtype, "|⟨rgrad, v⟩_x − ⟨g, v⟩|/(‖g‖‖v‖)",
                    check.metric_error, check.rtol)]


def retraction_first_order(m, dtype, batch):
    """``R_x(tu) = x + tu + O(t²)``: error slope ≥ 1.7 (float64 only)."""
    if dtype != torch.float64:
        return []
    x = m.random(*m.shape, dtype=dtype)
    check = check_retraction(m, x, torch.randn(x.shape, dtype=dtype))
    if check.ok:
        return []
    return [Failure("retraction first order", dtype,
                    f"slope of ‖R_x(tu) − x − tu‖ is {check.slope:.2f} (want ≥ 1.7), "
                    f"‖R_x(0) − x‖ = {check.zero_error:.1e}, worst constraint error "
                    f"{check.max_constraint_error:.1e}", check.slope, 1.7)]


def gradient_taylor(m, dtype, batch):
    """``f(R_x(td)) = f(x) + t⟨grad f, d⟩ + O(t²)`` for a polynomial ``f`` (float64 only)."""
    if dtype != torch.float64:
        return []
    x = m.random(*m.shape, dtype=dtype)
    weights = torch.randn(x.shape, dtype=dtype)
    check = check_gradient(m, lambda y: (weights * y).sum() + (y ** 4).sum() / 4, x)
    if check.ok:
        return []
    return [Failure("gradient Taylor", dtype, f"remainder slope {check.slope:.2f} (want ≥ "
                    f"1.7), tangent error of the gradient {check.tangent_error:.1e}",
                    check.slope, 1.7)]


def transport_tangent_linear(m, dtype, batch):
    """``transp(x, y, ·)`` maps ``T_x`` into ``T_y`` and is linear."""
    x = m.random(*m.shape, dtype=dtype)
    y = m.retr(x, _tangent(m, x, 0.1))
    v1, v2 = _tangent(m, x), _tangent(m, x)
    w = m.transp(x, y, v1)
    out = []
    ok, reason = m.check_vector_on_tangent(y, w, explain=True, ok_point=True)
    if not ok:
        out.append(Failure("transport tangent", dtype, str(reason), math.inf, 0.0))
    out += _close("transport tangent", dtype, "proju(y, transp(v)) != transp(v)",
                  m.proju(y, w), w, _point_tol(m, dtype))
    combined = m.transp(x, y, 2.0 * v1 - 3.0 * v2)
    out += _close("transport linear", dtype, "transp(2a − 3b) != 2 transp(a) − 3 transp(b)",
                  combined, 2.0 * w - 3.0 * m.transp(x, y, v2), _rtol(dtype))
    return out


def methods_batch(m, dtype, batch):
    """Every method on a batch equals the method on each element; one point broadcasts
    against a batch of vectors."""
    x = m.random(*batch, *m.shape, dtype=dtype).reshape(-1, *m.shape)
    u, g = torch.randn(x.shape, dtype=dtype), torch.randn(x.shape, dtype=dtype)
    v = m.proju(x, u)
    y = m.retr(x, 0.1 * v)
    z = torch.randn(x.shape[0], *m.param_shape, dtype=dtype)
    batched = {"proju": v, "egrad2rgrad": m.egrad2rgrad(x, g), "retr": y,
               "inner": m.inner(x, v, v), "transp": m.transp(x, y, v),
               "parametrize": m.parametrize(z), "as_matrix": m.as_matrix(x)}
    single = {name: [] for name in batched}
    for i in range(x.shape[0]):
        single["proju"].append(m.proju(x[i], u[i]))
        single["egrad2rgrad"].append(m.egrad2rgrad(x[i], g[i]))
        single["retr"].append(m.retr(x[i], 0.1 * v[i]))
        single["inner"].append(m.inner(x[i], v[i], v[i]))
        single["transp"].append(m.transp(x[i], y[i], v[i]))
        single["parametrize"].append(m.parametrize(z[i]))
        single["as_matrix"].append(m.as_matrix(x[i]))
    tol = 10 * m.constraint_atol(dtype) + _rtol(dtype) ** 2
    out = []
    for name, value in batched.items():
        out += _close("batch", dtype, f"{name} of a batch != {name} of each element", value,
                      torch.stack(single[name]), tol)
    out += _close("broadcast", dtype, "proju(one point, batch of vectors)", m.proju(x[0], u),
                  torch.stack([m.proju(x[0], u[i]) for i in range(x.shape[0])]), tol)
    return out


def methods_keep_dtype(m, dtype, batch):
    """Every method returns the input dtype."""
    x = m.random(*m.shape, dtype=dtype)
    u = torch.randn(x.shape, dtype=dtype)
    v = m.proju(x, u)
    outputs = {"projx": m.projx(x), "proju": v, "egrad2rgrad": m.egrad2rgrad(x, u),
               "retr": m.retr(x, 0.1 * v), "transp": m.transp(x, x, v),
               "inner": m.inner(x, v, v), "as_matrix": m.as_matrix(x),
               "parametrize": m.parametrize(torch.randn(m.param_shape, dtype=dtype))}
    return [Failure("dtype", dtype, f"{name} returned {out.dtype}", math.inf, 0.0)
            for name, out in outputs.items() if out.dtype != dtype]


def parametrize_gradcheck(m, dtype, batch):
    """``torch.autograd.gradcheck`` of ``parametrize`` on the first batch dimension
    (float64 only)."""
    if dtype != torch.float64 or not math.prod(m.param_shape):
        return []
    z = torch.randn(*batch[:1], *m.param_shape, dtype=dtype, requires_grad=True)
    try:
        torch.autograd.gradcheck(m.parametrize, (z,), atol=1e-5)
    except RuntimeError as error:  # GradcheckError
        first = str(error).splitlines()[0]
        return [Failure("parametrize gradcheck", dtype, first, math.inf, 1e-5)]
    return []


def as_matrix_mixer(m, dtype, batch):
    """``as_matrix`` gives finite ``(..., n, n)`` mixers and ``apply(x, s) = as_matrix(x) @ s``."""
    x = m.random(*batch, *m.shape, dtype=dtype)
    h = m.as_matrix(x)
    if tuple(h.shape) != (*batch, m.n, m.n) or not bool(torch.isfinite(h).all()):
        return [Failure("as_matrix", dtype, f"shape {tuple(h.shape)} (want "
                        f"{(*batch, m.n, m.n)}) or non-finite entries", math.inf, 0.0)]
    streams = torch.randn(*batch, m.n, 3, dtype=dtype)
    return _close("as_matrix", dtype, "apply(x, s) != as_matrix(x) @ s", m.apply(x, streams),
                  h @ streams, 10 * m.constraint_atol(dtype))


PROPERTIES: dict[str, Property] = {
    f.__name__: f for f in (
        random_on_set, projx_on_set, retr_on_set, parametrize_on_set, identity_param_on_set,
        proju_tangent_idempotent, egrad2rgrad_metric_consistent, retraction_first_order,
        gradient_taylor, transport_tangent_linear, methods_batch, methods_keep_dtype,
        parametrize_gradcheck, as_matrix_mixer)
}


def assert_manifold(manifold: Manifold, *,
                    dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64),
                    batch: tuple[int, ...] = (2, 3), seed: int = 0,
                    properties: Iterable[str] | None = None) -> None:
    """Run the manifold contract on ``manifold``; raise ``AssertionError`` listing every
    broken property with the measured error and the tolerance.

    ``dtypes``: the dtypes every property runs in (slope and gradcheck properties run in
    float64 only). ``batch``: the batch shape of the batched properties. ``seed`` seeds the
    draws, without touching the caller's global RNG. ``properties``: names from
    :data:`PROPERTIES` (default all). An exception raised inside a property counts as that
    property failing.
    """
    if not isinstance(manifold, Manifold):
        raise TypeError(f"manifold must be a mhckit.manifolds.Manifold, "
                        f"got {type(manifold).__name__}")
    names = list(PROPERTIES) if properties is None else list(properties)
    unknown = [name for name in names if name not in PROPERTIES]
    if unknown:
        raise ValueError(f"properties must be names from PROPERTIES {sorted(PROPERTIES)}, "
                         f"got {unknown}")
    batch = tuple(batch)
    failures: list[Failure] = []
    with torch.random.fork_rng(devices=[]):
        for dtype in dtypes:
            for name in names:
                torch.manual_seed(seed)
                try:
                    failures += PROPERTIES[name](manifold, dtype, batch)
                except Exception as error:  # noqa: BLE001 -- a crash is a broken property
                    failures.append(Failure(name, dtype, f"raised {type(error).__name__}: "
                                            f"{error}", math.inf, 0.0))
    if failures:
        lines = "\n".join(f"  - {f}" for f in failures)
        raise AssertionError(f"{manifold!r} breaks {len(failures)} propert"
                             f"{'y' if len(failures) == 1 else 'ies'} of the manifold "
                             f"contract:\n{lines}")
