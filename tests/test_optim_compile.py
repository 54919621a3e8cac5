"""``torch.compile`` of the optimizer step: same result as eager, no graph break at all.

The step keeps step counts as tensors while compiling (no recompilation per step) and never
reads a tensor value back to the host: value checks are off while tracing
(:func:`mhckit.functional.value_checks_enabled`) and a traced Sinkhorn runs a fixed number
of sweeps, so a step over Stiefel or Birkhoff parameters compiles to one graph.
"""

import geoopt
import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounter

from mhckit import manifolds as M
from mhckit.optim import RiemannianAdam, RiemannianSGD

OPTIMIZERS = {
    "adam": lambda params: RiemannianAdam(params, lr=0.05, weight_decay=0.1),
    "sgd": lambda params: RiemannianSGD(params, lr=0.05, momentum=0.9, nesterov=True),
}


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def make_params(manifold, shape, count=2):
    torch.manual_seed(0)
    return [*(geoopt.ManifoldParameter(manifold.random(*shape), manifold=manifold)
              for _ in range(count)), torch.nn.Parameter(torch.randn(5))]


def set_grads(pairs, seed):
    generator = torch.Generator().manual_seed(seed)
    for p, q in pairs:
        p.grad = 0.1 * torch.randn(p.shape, generator=generator)
        q.grad = p.grad.clone()


def run_pair(name, manifold, shape, backend, steps=3):
    """Eager and compiled copies after one shared eager step (state exists) and ``steps``
    more; returns the parameter pairs and the compile counter."""
    eager, compiled = make_params(manifold, shape), make_params(manifold, shape)
    eager_opt, compiled_opt = OPTIMIZERS[name](eager), OPTIMIZERS[name](compiled)
    pairs = list(zip(eager, compiled, strict=True))
    set_grads(pairs, 0)
    eager_opt.step()
    compiled_opt.step()
    counter = CompileCounter()
    step = torch.compile(compiled_opt.step, backend=counter if backend == "count" else backend)
    for i in range(1, steps + 1):
        set_grads(pairs, i)
        eager_opt.step()
        step()
    return pairs, counter


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_compiled_step_on_stiefel_matches_eager_in_one_graph(name):
    pairs, counter = run_pair(name, M.Stiefel(6, 3), (6, 3), backend="count", steps=4)
    assert counter.frame_count == 1  # one graph, and no recompilation as the count grows
    for p, q in pairs:
        torch.testing.assert_close(q.detach(), p.detach(), atol=1e-5, rtol=1e-5)
    params = make_params(M.Stiefel(6, 3), (6, 3))
    opt = OPTIMIZERS[name](params)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    explanation = torch._dynamo.explain(opt.step)()
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.slow  # inductor code generation: ~40 s on 2 cores
def test_inductor_compiled_adam_step_matches_eager():
    pairs, _ = run_pair("adam", M.Stiefel(6, 3), (6, 3), backend="inductor", steps=2)
    for p, q in pairs:
        torch.testing.assert_close(q.detach(), p.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["adam", pytest.param("sgd", marks=pytest.mark.slow)])
def test_compiled_step_on_birkhoff_matches_eager_without_graph_breaks(name):
    # dynamo's explain() runs the step it compiles, so one pass gives result and breaks
    manifold = M.Birkhoff(4)
    eager, compiled = make_params(manifold, (4, 4)), make_params(manifold, (4, 4))
    eager_opt, compiled_opt = OPTIMIZERS[name](eager), OPTIMIZERS[name](compiled)
    pairs = list(zip(eager, compiled, strict=True))
    for i in range(2):
        set_grads(pairs, i)
        eager_opt.step()
        if i == 0:
            compiled_opt.step()
    explanation = torch._dynamo.explain(compiled_opt.step)()
    assert explanation.graph_break_count == 0, explanation.break_reasons
    # eager Sinkhorn stops at tol = 1e-6, the traced one runs max_iter sweeps
    for p, q in pairs:
        torch.testing.assert_close(q.detach(), p.detach(), atol=1e-5, rtol=1e-5)
