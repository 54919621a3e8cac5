"""Sinkhorn normalization (of logits, or of a nonnegative matrix) with a tolerance, a
residual and an implicit backward."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from mhckit.functional.birkhoff_tangent import birkhoff_tangent_projection, solve_scaling_system
from mhckit.functional.support_divisor import support_divisor
from mhckit.functional.value_checks import value_checks_enabled

__all__ = ["SinkhornInfo", "sinkhorn", "sinkhorn_scale", "check_sinkhorn_options"]

# Iterations between two convergence checks: each check is one host synchronisation.
_CHECK_EVERY = 5
# Sweeps before the first check from a nearly doubly stochastic start (the matrix of a
# retraction, X ⊙ exp(U / X) with U tangent, has unit marginals to second order in U / X).
_WARM_FIRST_CHECK = 2
# Plain Sinkhorn sweeps before unconverged matrices switch to damped Newton steps (mHC's 20).
_SWEEPS_BEFORE_NEWTON = 20
# Newton: step lengths tried (largest accepted wins), Armijo constant, and the largest change
# of any log-entry in one step (a trust region: entries that underflowed look disconnected).
_STEP_LENGTHS = tuple(2.0 ** -k for k in range(12))
_ARMIJO = 1e-4
_MAX_LOG_STEP = 8.0
# Logit spread (max - min per matrix) above which the iteration starts from halved logits
# and doubles them back (ε-scaling), 5 sweeps per halving.
_ANNEALING_SPREAD = 16.0
_BACKWARDS = ("implicit", "unrolled")


class SinkhornInfo(NamedTuple):
    """What :func:`sinkhorn` reached.

    ``residual`` (shape ``logits.shape[:-2]``) is ``max(|P1 - 1|, |Pᵀ1 - 1|)`` of ``P`` in the
    working precision (summed in float64, so it is the residual of ``P`` and not of the
    sums' rounding); ``iterations`` counts row+column sweeps and Newton steps.
    """

    residual: torch.Tensor
    iterations: int


# The sweeps run on the batch-last layout ``(n, n, B)``: a row or column sum then adds whole
# length-B vectors (vectorized), where on ``(B, n, n)`` it reduces runs of n contiguous
# numbers one matrix at a time -- a sweep of 768 4x4 matrices is 6x faster on CPU this way.
# A small batch gains less than the two copies cost: it sweeps a batch-last *view*.
_RELAYOUT_MIN_BATCH = 64


def _batch_last(x: torch.Tensor) -> torch.Tensor:
    """``(..., n, n) -> (n, n, B)``, ``B`` the number of matrices (a copy in that layout
    from ``_RELAYOUT_MIN_BATCH`` matrices on, a view below)."""
    n = x.shape[-1]
    q = x.reshape(-1, n, n).permute(1, 2, 0)
    return q.contiguous() if q.shape[-1] >= _RELAYOUT_MIN_BATCH else q


def _batch_first(q: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`_batch_last`: ``(n, n, B) -> shape``, contiguous."""
    return q.permute(2, 0, 1).reshape(shape).contiguous()


def _residual(p: torch.Tensor) -> torch.Tensor:
    """``max(|P1 - 1|, |Pᵀ1 - 1|)`` per matrix of ``p``, shape ``p.shape[:-2]``."""
    rows = (p.sum(-1) - 1).abs().amax(-1)
    cols = (p.sum(-2) - 1).abs().amax(-1)
    return torch.maximum(rows, cols)


def _row_gap(q: torch.Tensor, exp_domain: bool) -> float:
    """``max |P1 - 1|`` over the whole batch-last ``q`` (``P`` itself, or ``log P``), read
    back to the host. Every sweep ends on the columns, so this is the residual up to the
    rounding of a column sum."""
    gap = q.sum(1) - 1 if exp_domain else q.logsumexp(1).expm1()
    return torch.linalg.vector_norm(gap, math.inf).item()


def _sweep(log_q: torch.Tensor) -> torch.Tensor:
    """One Sinkhorn iteration on batch-last ``log P``: normalize rows, then columns."""
    log_q = log_q - log_q.logsumexp(1, keepdim=True)
    return log_q - log_q.logsumexp(0, keepdim=True)


def _exp_sweep(q: torch.Tensor) -> torch.Tensor:
    """:func:`_sweep` on batch-last ``P`` itself: divide by the row sums, then the columns."""
    q = q / q.sum(1, keepdim=True)
    return q / q.sum(0, keepdim=True)


def _newton_step(log_p: torch.Tensor) -> torch.Tensor:
    """One damped Newton step on the concave Sinkhorn dual ``Φ(f, g) = Σf + Σg - Σ P``.

    The Newton direction solves ``[D_r P; Pᵀ D_c] (δf, δg) = (1 - P1, 1 - Pᵀ1)``
    (:func:`solve_scaling_system`), is shortened so no log-entry moves by more than
    ``_MAX_LOG_STEP``, and ``log P`` moves by ``t (δf1ᵀ + 1δgᵀ)`` with the largest
    ``t ∈ {1, 1/2, …}`` meeting Armijo's condition, per matrix (``t = 0`` if none does).
    Quadratic convergence where plain sweeps crawl (Brauer et al., arXiv 1710.06635).
    """
    p = log_p.double().exp()
    row_gap, col_gap = 1 - p.sum(-1), 1 - p.sum(-2)
    df, dg = solve_scaling_system(p, row_gap, col_gap)
    direction = df.unsqueeze(-1) + dg.unsqueeze(-2)
    with torch.no_grad():
        biggest = direction.abs().amax((-1, -2)).nan_to_num(float("inf"))
        shrink = (_MAX_LOG_STEP / biggest).clamp(max=1.0)
        slope = shrink * ((row_gap * df).sum(-1) + (col_gap * dg).sum(-1))
        length = torch.zeros_like(slope)
        for t in reversed(_STEP_LENGTHS):  # a longer accepted step overwrites a shorter one
            step = direction * (t * shrink).unsqueeze(-1).unsqueeze(-1)
            # Φ(t) - Φ(0) = t·slope - Σ P (e^{tδ} - 1 - tδ); expm1 keeps the curvature exact.
            curvature = torch.expm1(step).sub_(step).mul_(p).sum((-1, -2))
            accept = (curvature <= (1 - _ARMIJO) * t * slope) & torch.isfinite(curvature)
            length = torch.where(accept & (slope > 0), t * shrink, length)
        length = length.unsqueeze(-1).unsqueeze(-1)
    moved = log_p + (length * direction).to(log_p.dtype)
    return torch.where(length > 0, moved, log_p)


def _logit_spread(logits: torch.Tensor) -> float:
    """Largest ``max - min`` of the unmasked logits over the matrices of the batch."""
    masked = torch.isneginf(logits)
    top = logits.detach().amax((-1, -2))
    bottom = logits.detach().masked_fill(masked, float("inf")).amin((-1, -2))
    return float((top - bottom).max())


def _annealing_halvings(spread: float, max_iter: int) -> int:
    """How many times to halve logits of this spread before iterating (0 for ordinary ones)."""
    if not spread > _ANNEALING_SPREAD:
        return 0
    halvings = math.ceil(math.log2(spread / _ANNEALING_SPREAD))
    return halvings if halvings * _CHECK_EVERY + _SWEEPS_BEFORE_NEWTON <= max_iter else 0


def _iterate(log_p: torch.Tensor, tol: float, max_iter: int) -> tuple[torch.Tensor, int]:
    """ε-scaling for huge logits, then :func:`_converge` from ``log P = L`` (or from ``P``
    itself, for logits spread over at most ``_ANNEALING_SPREAD``: ``exp(L - max L)`` lies in
    ``[e^-16, 1]``, far from under- or overflow, and dividing by a sum is exact to rounding,
    so the iterates are the log-domain ones to rounding). Returns ``(P, iterations)``."""
    if torch.compiler.is_compiling():
        return _iterate_traced(log_p, max_iter, exp_domain=False)
    shape, iterations = log_p.shape, 0
    if not log_p.numel():
        return log_p.exp(), 0
    spread = _logit_spread(log_p)
    halvings = _annealing_halvings(spread, max_iter)
    q = _batch_last(log_p)
    # log P = sL + f1ᵀ + 1gᵀ at scale s = 2^-k; doubling log P warm-starts scale 2s exactly.
    if halvings:
        q = q * 2.0 ** -halvings
    for _ in range(halvings):
        for _ in range(_CHECK_EVERY):
            q = _sweep(q)
        q = q * 2.0
        iterations += _CHECK_EVERY
    exp_domain = not spread > _ANNEALING_SPREAD
    if exp_domain:
        q = (q - q.amax((0, 1), keepdim=True)).exp()
    return _converge(q, exp_domain, shape, tol, max_iter, iterations)


def _iterate_scaled(a: torch.Tensor, tol: float, max_iter: int) -> tuple[torch.Tensor, int]:
    """:func:`_converge` from ``P = A``, a nonnegative matrix (no logarithm, no ε-scaling)."""
    if torch.compiler.is_compiling():
        return _iterate_traced(a, max_iter, exp_domain=True)
    if not a.numel():
        return a.clone(), 0
    return _converge(_batch_last(a), True, a.shape, tol, max_iter, 0,
                     first_check=_WARM_FIRST_CHECK)


def _converge(q: torch.Tensor, exp_domain: bool, shape: torch.Size, tol: float, max_iter: int,
              iterations: int, first_check: int = _CHECK_EVERY) -> tuple[torch.Tensor, int]:
    """Sinkhorn sweeps on the batch-last ``q`` (``P``, or ``log P`` if not ``exp_domain``),
    then Newton steps on ``log P``, until the row residual is ``<= tol`` (checked after
    ``first_check`` sweeps, then every ``_CHECK_EVERY`` sweeps and after every Newton step;
    never for ``tol = 0``) or ``iterations`` reaches ``max_iter``. Returns
    ``(P, iterations)``, ``P`` of ``shape``."""
    sweeps, between_checks = 0, first_check
    while iterations < max_iter:
        if sweeps < _SWEEPS_BEFORE_NEWTON:
            for _ in range(min(between_checks, max_iter - iterations)):
                q = _exp_sweep(q) if exp_domain else _sweep(q)
                iterations += 1
                sweeps += 1
            between_checks = _CHECK_EVERY
        else:  # the sweep keeps every iterate column stochastic, converged or not
            if exp_domain:  # back to log P; masked zeros stay -inf, with zero gradient
                support = q > 0
                q = torch.where(support, torch.where(support, q, 1.0).log(), -math.inf)
                exp_domain = False
            q = _sweep(_batch_last(_newton_step(_batch_first(q, shape))))
            iterations += 1
        if tol > 0:  # tol = 0: a fixed count, which reads nothing back to the host
            with torch.no_grad():
                if _row_gap(q, exp_domain) <= tol:
                    break
    return _batch_first(q if exp_domain else q.exp(), shape), iterations


def _iterate_traced(q: torch.Tensor, max_iter: int, exp_domain: bool
                    ) -> tuple[torch.Tensor, int]:
    """:func:`_iterate` (or :func:`_iterate_scaled`) as ``torch.compile`` traces it:
    ``max_iter`` log-domain sweeps (exp-domain sweeps on ``P = A``).

    The early stop, the ε-scaling and the switch to Newton steps all decide on values read
    back to the host, which would break the graph; a traced Sinkhorn is mHC's fixed-count
    iteration instead (arXiv 2512.24880), which the compiler fuses."""
    shape = q.shape
    q = _batch_last(q)
    for _ in range(max_iter):
        q = _exp_sweep(q) if exp_domain else _sweep(q)
    return _batch_first(q if exp_domain else q.exp(), shape), max_iter


def _iteration(scaled: bool):
    """:func:`_iterate_scaled` (from a matrix ``A``) or :func:`_iterate` (from logits)."""
    return _iterate_scaled if scaled else _iterate


class _ImplicitSinkhorn(torch.autograd.Function):
    """Sinkhorn whose backward differentiates the fixed point, not the iterations.

    At convergence ``P = exp(L + f1ᵀ + 1gᵀ)`` has unit marginals, so ``dP = Π_P(P ⊙ dL)``
    (:func:`birkhoff_tangent_projection`). ``Π_P`` is self-adjoint in ``<U, V>_P = Σ U⊙V/P``,
    hence the vector-Jacobian product is ``∂ℓ/∂L = Π_P(P ⊙ ∂ℓ/∂P)``. Only ``P`` is saved;
    from a matrix ``A`` (``scaled``, ``L = log A``) also ``A``, and ``∂ℓ/∂A = ∂ℓ/∂L / A``
    (0 where ``A = 0``, where ``P`` is 0 whatever small change of ``L``).
    """

    @staticmethod
    def forward(start, tol, max_iter, scaled):
        return _iteration(scaled)(start, tol, max_iter)

    @staticmethod
    def setup_context(ctx, inputs, output):
        # Separate from forward so that torch.func (jacrev, vmap of the vjp) can use it.
        start, _, _, scaled = inputs
        p, _ = output
        ctx.scaled = scaled
        ctx.save_for_backward(p, start if scaled else None)

    @staticmethod
    def backward(ctx, grad_p, grad_iterations):
        p, start = ctx.saved_tensors
        grad = birkhoff_tangent_projection(p, p * grad_p)
        if ctx.scaled:
            grad = grad / support_divisor(start)
        return grad, None, None, None


def _run(start: torch.Tensor, tol: float, max_iter: int, backward: str, scaled: bool,
         return_info: bool) -> torch.Tensor | tuple[torch.Tensor, SinkhornInfo]:
    """The common body of :func:`sinkhorn` and :func:`sinkhorn_scale` (arguments checked)."""
    work = torch.float64 if start.dtype == torch.float64 else torch.float32
    q = start.to(work)
    # Row sums of n entries carry ~√n·eps of rounding: a smaller tol would only burn max_iter.
    tol = float(tol)
    if tol > 0:
        tol = max(tol, 2 * math.sqrt(start.shape[-1]) * torch.finfo(work).eps)
    if backward == "implicit" and q.requires_grad and torch.is_grad_enabled():
        p, iterations = _ImplicitSinkhorn.apply(q, tol, max_iter, scaled)
    else:
        p, iterations = _iteration(scaled)(q, tol, max_iter)
    if not return_info:
        return p.to(start.dtype)
    with torch.no_grad():  # summed in float64: the residual of P itself, not of its rounding
        residual = _residual(p.double()).to(work)
    return p.to(start.dtype), SinkhornInfo(residual, iterations)


def check_sinkhorn_options(tol: object, max_iter: object, backward: object) -> None:
    """Raise ``ValueError`` naming ``tol``, ``max_iter`` or ``backward`` if one is invalid."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")
    if backward not in _BACKWARDS:
        raise ValueError(f"backward must be one of {_BACKWARDS}, got {backward!r}")


def _check_arguments(start: object, name: str, tol: object, max_iter: object,
                     backward: object) -> bool:
    """Check the type, shape and options; return whether the values should be checked too
    (a non-empty input with value checks on: those read the host)."""
    if not isinstance(start, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(start).__name__}")
    if not start.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {start.dtype}")
    if start.dim() < 2 or start.shape[-1] != start.shape[-2] or start.shape[-1] < 1:
        raise ValueError(f"{name} must have shape (..., n, n) with n >= 1, "
                         f"got shape {tuple(start.shape)}")
    check_sinkhorn_options(tol, max_iter, backward)
    return start.numel() > 0 and value_checks_enabled()


def _check_values(invalid: torch.Tensor, masked: torch.Tensor, name: str, invalid_text: str,
                  masked_text: str) -> None:
    """Raise if any entry is ``invalid`` or a row or column is entirely ``masked``."""
    bad = torch.stack([invalid.any(), masked.all(-1).any(), masked.all(-2).any()]).tolist()
    if bad[0]:
        raise ValueError(f"{name} must be {invalid_text}")
    if bad[1] or bad[2]:
        raise ValueError(f"{name} has a row or column that is entirely {masked_text}: "
                         "no doubly stochastic matrix has that support")


def sinkhorn(logits: torch.Tensor, *, tol: float = 1e-6, max_iter: int = 100,
             backward: str = "implicit", return_info: bool = False
             ) -> torch.Tensor | tuple[torch.Tensor, SinkhornInfo]:
    """Doubly stochastic ``P = diag(a) exp(L) diag(b)`` from logits ``L`` of shape ``(..., n, n)``.

    Sinkhorn–Knopp scaling in the log domain: with dual potentials ``f, g`` and
    ``log P = L + f1ᵀ + 1gᵀ``, each iteration sets ``f ← -logsumexp_j(L + 1gᵀ)`` (rows) then
    ``g ← -logsumexp_i(L + f1ᵀ)`` (columns). The potentials are absorbed into ``log P`` at
    every step, so a step's rounding error scales with that step's update rather than with
    ``|L|``. Plain sweeps crawl when ``P`` is nearly sparse, so two accelerations change the
    path but not the fixed point: logits spread over more than 16 start halved ``k`` times
    and are doubled back after 5 sweeps each (ε-scaling, used only if ``5k + 20 <= max_iter``),
    and after 20 sweeps unconverged batches take damped Newton steps on the dual, each
    followed by a sweep (so ``P`` is column stochastic whatever the residual). With
    ``max_iter <= 20`` this is exactly mHC's Sinkhorn–Knopp (arXiv 2512.24880).

    It stops once ``max |P1 - 1| <= tol`` for every matrix of the batch (every sweep ends
    on the columns, so ``Pᵀ1 = 1`` to the rounding of a column sum; a positive ``tol`` is
    raised to ``2√n·eps`` of the working dtype, the rounding floor of a row sum), checked
    every 5 sweeps and after every Newton step (one host synchronisation per check), or after
    ``max_iter`` iterations. ``tol=0`` runs exactly ``max_iter`` iterations and checks
    nothing: apart from one read of the logits' spread, it waits on no GPU. It does not warn
    when ``tol`` is not reached; the residual says so (``return_info=True`` returns
    ``(P, SinkhornInfo(residual, iterations))``).

    Under ``torch.compile`` every one of those decisions would read a value back to the
    host and break the graph, so a traced call runs exactly ``max_iter`` plain log-domain
    sweeps (mHC's fixed-count Sinkhorn) and the compiler fuses them; the residual still
    reports what was reached. The NaN/``-inf``-row checks of the input are skipped while
    tracing and inside ``value_checks(False)`` (:mod:`mhckit.functional.value_checks`).

    ``-inf`` entries are masked (``P`` is 0 there); a row or column entirely ``-inf`` raises
    ``ValueError``. If the unmasked pattern supports no doubly stochastic matrix, ``P``
    tends to one on a smaller support and the residual decays slowly. Computed in float32 at
    least (float64 for float64 input), returned in the input dtype; never NaN for input that
    passes the checks (finite or ``-inf`` entries).

    Backward: ``"implicit"`` (default) differentiates the fixed point, saving only ``P``:
    ``∂ℓ/∂L = Π_P(P ⊙ ∂ℓ/∂P)`` with ``Π_P`` the Fisher-metric tangent projection
    (:func:`mhckit.functional.birkhoff_tangent_projection`); memory does not depend on the
    number of iterations and the backward is itself differentiable. ``"unrolled"`` lets
    autograd record every iteration, as in mHC; its memory grows linearly with the
    iterations. Both agree at convergence; before it, the implicit gradient is that of the
    fixed point ``P`` approximates.
    """
    if _check_arguments(logits, "logits", tol, max_iter, backward):
        _check_values(torch.isnan(logits) | torch.isposinf(logits), torch.isneginf(logits),
                      "logits", "finite or -inf (masked), got NaN or +inf entries", "-inf")
    return _run(logits, tol, max_iter, backward, False, return_info)


def sinkhorn_scale(matrix: torch.Tensor, *, tol: float = 1e-6, max_iter: int = 100,
                   backward: str = "implicit", return_info: bool = False
                   ) -> torch.Tensor | tuple[torch.Tensor, SinkhornInfo]:
    """Doubly stochastic ``P = diag(a) A diag(b)`` of a nonnegative matrix ``A`` ``(..., n, n)``.

    The Sinkhorn–Knopp scaling of ``A`` itself (Sinkhorn & Knopp, Pacific J. Math. 1967):
    :func:`sinkhorn` of ``log A``, with zeros of ``A`` masked, computed without the logarithm.
    The sweeps divide ``P`` by its row sums, then by its column sums, from ``P = A``; nothing
    is exponentiated, so there is no ε-scaling, and after 20 sweeps unconverged batches take
    :func:`sinkhorn`'s Newton steps on ``log P``. The first convergence check comes after 2
    sweeps, not 5: ``A`` is typically a warm start (a retraction's ``X ⊙ exp(U / X)``, ``U``
    tangent, has unit marginals to second order in ``U / X``). ``tol``, ``max_iter``,
    ``return_info``, the traced fixed-count path (``max_iter`` sweeps on ``P``) and the
    working precision are :func:`sinkhorn`'s; with ``tol=0`` (exactly ``max_iter``
    iterations, no check) it reads nothing back to the host at all.

    This is the cheaper call where ``A`` is at hand, as in the multiplicative retraction
    ``X ⊙ exp(U / X)`` of :class:`~mhckit.manifolds.Birkhoff`: it skips the logarithm, the
    exponential and the logit-spread test (one host synchronisation).

    ``A`` must be finite and ``>= 0`` with no row or column entirely 0 (``ValueError``
    otherwise; checked where value checks are on). Backward: ``"implicit"`` gives
    ``∂ℓ/∂A = Π_P(P ⊙ ∂ℓ/∂P) / A`` where ``A > 0`` and 0 where ``A = 0`` (the chain rule
    through ``L = log A``); ``"unrolled"`` records the sweeps.
    """
    if _check_arguments(matrix, "matrix", tol, max_iter, backward):
        _check_values(~torch.isfinite(matrix) | (matrix < 0), matrix == 0, "matrix",
                      "finite and >= 0, got NaN, inf or negative entries", "0")
    return _run(matrix, tol, max_iter, backward, True, return_info)
