"""``torch.compile`` traces every preset's block, forward and backward, as one graph.

``fullgraph=True`` turns any graph break into an error, and the ``aot_eager`` backend traces
the backward too (custom autograd functions such as the Cayley presets' inverse and
Sinkhorn's implicit backward included), so each case is the statement "zero graph breaks".
"""

import pytest
import torch
from torch import nn

from mhckit.nn import PRESETS, HyperConnection

N = 4


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _perturbed_block(mixer):
    torch.manual_seed(0)
    block = HyperConnection(4, N, mixer, branch=nn.Linear(4, 4))
    with torch.no_grad():  # leave the initial point, so the dynamic path carries gradients
        for name, p in block.named_parameters():
            if not name.startswith("branch"):
                p.add_(0.3 * torch.randn_like(p))
    return block


def _loss_and_grads(block, x):
    block.zero_grad()
    x.grad = None
    loss = block(x).square().sum()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in block.parameters()] + [x.grad.clone()]


@pytest.mark.parametrize("mixer", sorted(PRESETS))
def test_every_preset_forward_traces_as_one_graph(mixer):
    explanation = torch._dynamo.explain(_perturbed_block(mixer))(torch.randn(2, 3, N, 4))
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.slow  # 5-15 s per preset on 2 shared cores (AOT tracing, forward and backward)
@pytest.mark.parametrize("mixer", sorted(PRESETS))
def test_every_preset_compiles_forward_and_backward_without_a_graph_break(mixer):
    block = _perturbed_block(mixer)
    x = torch.randn(2, 3, N, 4, requires_grad=True)
    eager_loss, eager_grads = _loss_and_grads(block, x)
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    traced_loss, traced_grads = _loss_and_grads(compiled, x)
    torch.testing.assert_close(traced_loss, eager_loss, atol=1e-5, rtol=1e-5)
    for got, want in zip(traced_grads, eager_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
