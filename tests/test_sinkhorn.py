"""mhckit.functional.sinkhorn: tolerance, residual, robustness and the implicit backward."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mhckit.functional import SinkhornInfo, birkhoff_tangent_projection, sinkhorn, sinkhorn_scale

TIGHT = {"tol": 1e-14, "max_iter": 1000}


def residual(p):
    p = p.double()
    return torch.maximum((p.sum(-1) - 1).abs().amax(-1), (p.sum(-2) - 1).abs().amax(-1))


def saved_bytes(fn):
    """Bytes autograd saves for backward while ``fn`` runs (each saved tensor counted once)."""
    seen = {}

    def pack(t):
        seen[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


# -- the forward --------------------------------------------------------------------------

@given(batch=st.lists(st.integers(0, 3), max_size=2), n=st.integers(1, 8),
       scale=st.floats(0.0, 10.0), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_output_is_doubly_stochastic_within_tol_and_reports_its_residual(batch, n, scale, dtype):
    logits = scale * torch.randn(*batch, n, n, dtype=dtype)
    p, info = sinkhorn(logits, return_info=True)
    assert p.shape == logits.shape and p.dtype == dtype
    assert isinstance(info, SinkhornInfo) and info.residual.shape == tuple(batch)
    assert torch.isfinite(p).all() and (p >= 0).all()
    if p.numel():
        assert float(info.residual.max()) <= 1e-6
        torch.testing.assert_close(info.residual.double(), residual(p), atol=1e-7, rtol=0)


def test_half_precision_input_is_computed_in_float32_and_returned_in_its_dtype():
    logits = torch.randn(5, 4, 4).bfloat16()
    p, info = sinkhorn(logits, return_info=True)
    assert p.dtype == torch.bfloat16 and info.residual.dtype == torch.float32
    assert torch.equal(p, sinkhorn(logits.float()).bfloat16())


def test_is_invariant_to_adding_row_and_column_constants():
    logits = torch.randn(3, 5, 5, dtype=torch.float64)
    shifted = logits + torch.randn(3, 5, 1, dtype=torch.float64) + torch.randn(3, 1, 5,
                                                                            dtype=torch.float64)
    torch.testing.assert_close(sinkhorn(shifted, **TIGHT), sinkhorn(logits, **TIGHT))


def test_stops_at_the_tolerance_before_max_iter():
    logits = torch.randn(8, 6, 6, dtype=torch.float64)
    _, loose = sinkhorn(logits, tol=1e-3, return_info=True)
    _, tight = sinkhorn(logits, tol=1e-12, return_info=True)
    assert float(loose.residual.max()) <= 1e-3 and float(tight.residual.max()) <= 1e-12
    assert loose.iterations < tight.iterations < 100


def test_tol_zero_runs_max_iter_and_a_tol_below_rounding_is_raised_to_it():
    logits = torch.randn(8, 6, 6)
    assert sinkhorn(logits, tol=0, max_iter=37, return_info=True)[1].iterations == 37
    _, info = sinkhorn(logits, tol=1e-30, return_info=True)  # float32: floor 2·√6·eps
    assert info.iterations < 100
    assert float(info.residual.max()) <= 2 * math.sqrt(6) * torch.finfo(torch.float32).eps


def test_stops_after_max_iter_when_the_tolerance_is_out_of_reach():
    # [[a, 0], [b, c]] is doubly stochastic only with b = 0: the iteration never gets there.
    logits = torch.tensor([[0.0, -math.inf], [0.0, 0.0]])
    p, info = sinkhorn(logits, tol=1e-12, max_iter=7, return_info=True)
    assert info.iterations == 7 and float(info.residual) > 1e-12
    assert torch.isfinite(p).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [4, 16])
def test_extreme_logits_give_no_nan_and_an_honest_residual(dtype, n):
    logits = (1e4 * torch.randn(16, n, n, dtype=torch.float64)).to(dtype)
    logits.requires_grad_(True)
    for backward in ("implicit", "unrolled"):
        p, info = sinkhorn(logits, backward=backward, return_info=True)
        assert torch.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
        torch.testing.assert_close(info.residual.double(), residual(p), atol=1e-6, rtol=0)
        (grad,) = torch.autograd.grad((p * torch.randn_like(p)).sum(), logits)
        assert torch.isfinite(grad).all()
    if n == 4:  # ε-scaling + Newton converge here; at n = 16 most, not all, matrices do
        assert float((info.residual <= 1e-6).double().mean()) >= 0.9


def test_masked_entries_are_zero_and_the_rest_is_doubly_stochastic():
    logits = torch.randn(4, 5, 5, dtype=torch.float64)
    mask = torch.rand(4, 5, 5) < 0.4
    mask &= ~torch.eye(5, dtype=torch.bool)  # the diagonal keeps a doubly stochastic support
    p, info = sinkhorn(logits.masked_fill(mask, -math.inf), return_info=True, **TIGHT)
    assert (p[mask] == 0).all()
    assert float(info.residual.max()) <= 1e-12


def test_masked_entries_get_zero_and_finite_gradients():
    logits = torch.randn(5, 5, dtype=torch.float64).masked_fill(
        torch.eye(5, dtype=torch.bool).roll(1, 0), -math.inf).requires_grad_(True)
    for backward in ("implicit", "unrolled"):
        p = sinkhorn(logits, backward=backward, **TIGHT)
        (grad,) = torch.autograd.grad((p * torch.randn_like(p)).sum(), logits)
        assert torch.isfinite(grad).all()
        assert (grad[torch.isneginf(logits)] == 0).all()


@pytest.mark.parametrize("axis", [-1, -2], ids=["row", "column"])
def test_a_row_or_column_entirely_masked_raises(axis):
    logits = torch.zeros(2, 3, 3)
    if axis == -1:
        logits[1, 2, :] = -math.inf
    else:
        logits[1, :, 0] = -math.inf
    with pytest.raises(ValueError, match="entirely -inf"):
        sinkhorn(logits)


@pytest.mark.parametrize("bad, error, match", [
    ([[0.0, 1.0], [1.0, 0.0]], TypeError, "torch.Tensor"),
    (torch.zeros(2, 2, dtype=torch.int64), TypeError, "floating"),
    (torch.zeros(2, 3), ValueError, r"\(\.\.\., n, n\)"),
    (torch.zeros(3), ValueError, r"\(\.\.\., n, n\)"),
    (torch.tensor([[math.nan, 0.0], [0.0, 0.0]]), ValueError, "NaN"),
    (torch.tensor([[math.inf, 0.0], [0.0, 0.0]]), ValueError, r"\+inf"),
])
def test_bad_logits_raise_naming_the_argument(bad, error, match):
    with pytest.raises(error, match=match):
        sinkhorn(bad)


@pytest.mark.parametrize("option, value", [("tol", -1.0), ("tol", math.nan), ("max_iter", 0),
                                           ("max_iter", 2.5), ("backward", "autograd")])
def test_bad_options_raise_naming_them(option, value):
    with pytest.raises(ValueError, match=option):
        sinkhorn(torch.zeros(2, 2), **{option: value})


def test_trivial_sizes():
    assert sinkhorn(torch.zeros(0, 3, 3)).shape == (0, 3, 3)
    assert torch.equal(sinkhorn(torch.full((2, 1, 1), 7.0)), torch.ones(2, 1, 1))


# -- the backward -------------------------------------------------------------------------

def test_implicit_backward_passes_gradcheck_in_float64():
    logits = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: sinkhorn(z, **TIGHT), (logits,))


def test_implicit_backward_is_itself_differentiable():
    logits = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda z: sinkhorn(z, **TIGHT), (logits,))


@pytest.mark.parametrize("scale", [1.0, 8.0], ids=["sweeps", "sweeps+newton"])
@pytest.mark.parametrize("shape", [(5, 5), (3, 4, 4), (2, 2, 7, 7)])
def test_implicit_gradient_equals_unrolled_gradient_at_convergence(shape, scale):
    logits = (scale * torch.randn(shape, dtype=torch.float64)).requires_grad_(True)
    weights = torch.randn(shape, dtype=torch.float64)
    grads = [torch.autograd.grad((sinkhorn(logits, backward=b, **TIGHT) * weights).sum(),
                                 logits)[0] for b in ("implicit", "unrolled")]
    torch.testing.assert_close(grads[0], grads[1], atol=1e-8, rtol=0)


@given(n=st.integers(2, 6), scale=st.floats(0.1, 5.0))
def test_implicit_gradient_has_zero_row_and_column_sums(n, scale):
    """The gradient is tangent: logits shifted by row/column constants give the same P."""
    logits = (scale * torch.randn(n, n, dtype=torch.float64)).requires_grad_(True)
    p = sinkhorn(logits, **TIGHT)
    (grad,) = torch.autograd.grad((p * torch.randn_like(p)).sum(), logits)
    assert float(grad.sum(-1).abs().max()) <= 1e-12
    assert float(grad.sum(-2).abs().max()) <= 1e-12


def test_implicit_backward_saves_only_the_result():
    logits = torch.randn(6, 4, 4, requires_grad=True)
    nbytes, p = saved_bytes(lambda: sinkhorn(logits))
    assert nbytes == p.numel() * p.element_size()


def test_implicit_memory_does_not_grow_with_iterations_but_unrolled_does():
    logits = 6 * torch.randn(16, 5, 5, requires_grad=True)

    def run(backward, max_iter):
        return saved_bytes(lambda: sinkhorn(logits, tol=0.0, max_iter=max_iter,
                                            backward=backward, return_info=True))

    (short, (_, info_short)), (long, (_, info_long)) = run("implicit", 5), run("implicit", 20)
    assert info_short.iterations < info_long.iterations and short == long
    (short, _), (long, _) = run("unrolled", 5), run("unrolled", 20)
    assert long >= 3 * short


def test_no_graph_is_built_without_grad():
    logits = torch.randn(3, 3, requires_grad=True)
    with torch.no_grad():
        assert sinkhorn(logits).grad_fn is None
    assert sinkhorn(logits.detach()).grad_fn is None


def test_implicit_backward_works_under_torch_func_jacrev():
    """The implicit Function has ``setup_context``, so ``torch.func`` transforms can use it."""
    z = torch.randn(3, 4, 4, dtype=torch.float64)

    def f(logits):
        return sinkhorn(logits, tol=1e-13, max_iter=500)

    expected = torch.autograd.functional.jacobian(f, z)
    torch.testing.assert_close(torch.func.jacrev(f)(z), expected, rtol=0, atol=1e-12)


# -- the two iterations: exp-domain sweeps and the traced fixed-count path -------------------

def log_domain_sweeps(logits, sweeps):
    """Reference: ``sweeps`` plain log-domain Sinkhorn iterations (rows, then columns)."""
    log_p = logits
    for _ in range(sweeps):
        log_p = log_p - log_p.logsumexp(-1, keepdim=True)
        log_p = log_p - log_p.logsumexp(-2, keepdim=True)
    return log_p.exp()


@given(n=st.integers(1, 6), spread=st.floats(0.0, 16.0), sweeps=st.integers(1, 20),
       seed=st.integers(0, 2**16))
def test_exp_domain_sweeps_equal_log_domain_sweeps_for_moderate_logits(n, spread, sweeps, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = spread * torch.rand(3, n, n, generator=generator, dtype=torch.float64)
    p = sinkhorn(logits, tol=0.0, max_iter=sweeps)  # may stop early at an exact fixed point
    torch.testing.assert_close(p, log_domain_sweeps(logits, sweeps), atol=1e-12, rtol=1e-10)


def traced_without_graph_break(fn, x):
    """``fn(x)`` compiled whole (asserting dynamo breaks no graph in it)."""
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(fn)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    out = torch.compile(fn, backend="eager", fullgraph=True)(x)
    torch._dynamo.reset()
    return out


def test_traced_sinkhorn_has_no_graph_break_and_matches_eager_within_tol():
    logits = 3.0 * torch.eye(4) + 0.3 * torch.randn(16, 4, 4)
    traced, info = traced_without_graph_break(
        lambda z: sinkhorn(z, tol=1e-6, max_iter=20, return_info=True), logits)
    assert info.iterations == 20  # a fixed count: no early stop while traced
    torch.testing.assert_close(traced, log_domain_sweeps(logits, 20), atol=1e-6, rtol=0)
    torch.testing.assert_close(traced, sinkhorn(logits, tol=1e-6, max_iter=20), atol=2e-6, rtol=0)


# -- sinkhorn_scale: the scaling of a nonnegative matrix itself --------------------------------

@given(batch=st.lists(st.integers(1, 3), max_size=2), n=st.integers(1, 6),
       spread=st.floats(0.0, 30.0), zeros=st.booleans(), seed=st.integers(0, 2**16))
def test_scaling_a_matrix_is_sinkhorn_of_its_logarithm(batch, n, spread, zeros, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = spread * torch.rand(*batch, n, n, generator=generator, dtype=torch.float64)
    if zeros:  # masked entries off a permuted diagonal, which keeps a doubly stochastic support
        keep = torch.eye(n, dtype=torch.bool)[torch.randperm(n, generator=generator)]
        drop = (torch.rand(*batch, n, n, generator=generator) < 0.3) & ~keep
        logits = logits.masked_fill(drop, -math.inf)
    p, info = sinkhorn_scale(logits.exp(), return_info=True, **TIGHT)
    assert float(info.residual.max()) <= 1e-12
    torch.testing.assert_close(p, sinkhorn(logits, **TIGHT), atol=1e-10, rtol=0)
    assert (p[torch.isneginf(logits)] == 0).all()


def test_scaling_stops_at_the_tolerance_and_keeps_the_dtype():
    a = torch.rand(6, 4, 4) + 0.1
    p, info = sinkhorn_scale(a, tol=1e-6, return_info=True)
    assert p.dtype == torch.float32 and info.iterations < 100
    assert float(info.residual.max()) <= 1e-6
    assert sinkhorn_scale(a.bfloat16()).dtype == torch.bfloat16


def test_scaling_implicit_backward_passes_gradcheck_in_float64():
    a = (torch.rand(2, 4, 4, dtype=torch.float64) + 0.2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: sinkhorn_scale(m, **TIGHT), (a,))


def test_scaling_implicit_gradient_equals_unrolled_and_is_zero_where_a_is_zero():
    a = torch.rand(3, 5, 5, dtype=torch.float64) + 0.1
    a[:, 0, 1] = 0.0
    weights = torch.randn(3, 5, 5, dtype=torch.float64)
    grads = []
    for backward in ("implicit", "unrolled"):
        leaf = a.clone().requires_grad_(True)
        (sinkhorn_scale(leaf, backward=backward, **TIGHT) * weights).sum().backward()
        grads.append(leaf.grad)
    assert torch.isfinite(grads[0]).all() and (grads[0][:, 0, 1] == 0).all()
    torch.testing.assert_close(grads[0][a > 0], grads[1][a > 0], atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("bad, match", [
    (torch.tensor([[1.0, -0.5], [0.5, 1.0]]), "negative"),
    (torch.tensor([[1.0, math.nan], [0.5, 1.0]]), "NaN"),
    (torch.tensor([[1.0, math.inf], [0.5, 1.0]]), "inf"),
    (torch.tensor([[0.0, 0.0], [0.5, 1.0]]), "entirely 0"),
    (torch.tensor([[0.0, 1.0], [0.0, 1.0]]), "entirely 0"),
    (torch.zeros(2, 3), r"\(\.\.\., n, n\)"),
])
def test_scaling_bad_matrices_raise_naming_the_argument(bad, match):
    with pytest.raises(ValueError, match=f"matrix.*{match}"):
        sinkhorn_scale(bad)


def test_traced_scaling_has_no_graph_break_and_runs_max_iter_sweeps():
    a = torch.rand(16, 4, 4) + 0.05
    traced, info = traced_without_graph_break(
        lambda m: sinkhorn_scale(m, tol=1e-6, max_iter=30, return_info=True), a)
    assert info.iterations == 30
    torch.testing.assert_close(traced, log_domain_sweeps(a.log(), 30), atol=1e-6, rtol=0)


def test_scaling_a_retraction_start_stops_after_two_sweeps():
    """``X ⊙ exp(U / X)`` with ``U`` tangent at a doubly stochastic ``X`` has unit marginals to
    second order in ``U / X``: the first check, after 2 sweeps, already finds ``tol``."""
    x = sinkhorn(torch.randn(16, 4, 4, generator=torch.Generator().manual_seed(0)))
    u = birkhoff_tangent_projection(x, 1e-3 * torch.randn(16, 4, 4) * x)
    p, info = sinkhorn_scale(x * (u / x).exp(), tol=1e-6, return_info=True)
    assert info.iterations == 2 and float(info.residual.max()) <= 1e-6


@pytest.mark.parametrize("batch", [7, 300], ids=["view", "relayout"])
def test_small_and_large_batches_give_each_matrix_its_own_result(batch):
    """Below 64 matrices the sweeps run on a view of the input, from 64 on on a batch-last
    copy: either way a matrix comes out as it does alone (to the tolerance reached)."""
    logits = 3.0 * torch.randn(batch, 4, 4, dtype=torch.float64)
    together = sinkhorn(logits, **TIGHT)
    alone = torch.stack([sinkhorn(z, **TIGHT) for z in logits[:5]])
    torch.testing.assert_close(together[:5], alone, atol=1e-12, rtol=0)
    assert together.is_contiguous()
