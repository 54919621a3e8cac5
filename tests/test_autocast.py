"""Constraint maps under a bf16 ``torch.autocast``: computed in the input's precision.

Every ``Manifold.parametrize`` and ``as_matrix`` (a user-built subclass's too), the Cayley
map and the polar refinement run with autocast off, so under a bf16 autocast they give the
float32 result bit for bit, forward and backward. Before, go-mHC's and sHC's maps raised in
their custom backward (bf16 forward values met float32 cotangents), and the Stiefel /
Grassmann mixer ``U Uᵀ`` and ``polar_refine`` silently came back in bf16 (a rounding of
``4e-3`` on sets that are exact to ``1e-5``).
"""

import pytest
import torch
from manifold_cases import CASES

from mhckit.functional import cayley, polar_refine, skew
from mhckit.manifolds import Manifold, Unconstrained


def under_autocast(fn, *inputs, enabled):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
        out = fn(*inputs)
    weight = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    (out.float() * weight).sum().backward()
    return out, [t.grad for t in inputs]


def assert_same_under_autocast(fn, *inputs):
    out, grads = under_autocast(fn, *inputs, enabled=False)
    out_bf16, grads_bf16 = under_autocast(fn, *inputs, enabled=True)
    assert out_bf16.dtype == out.dtype == torch.float32
    assert torch.equal(out_bf16, out)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_bf16, strict=True))


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_manifolds_map_and_mixer_are_the_float32_ones_under_bf16_autocast(case):
    manifold = CASES[case]()
    z = torch.randn(5, *manifold.param_shape, generator=torch.Generator().manual_seed(0))
    assert_same_under_autocast(manifold.parametrize, z)
    assert_same_under_autocast(lambda z: manifold.as_matrix(manifold.parametrize(z)), z)


@pytest.mark.parametrize("size", [3, 8])
def test_cayley_with_and_without_a_base_and_the_polar_refinement_too(size):
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, size, size, generator=g)
    base = torch.linalg.qr(torch.randn(size, size, generator=g))[0]
    assert_same_under_autocast(lambda a: cayley(skew(a)), a)
    assert_same_under_autocast(lambda a: cayley(skew(a), base, refine=True), a)
    assert_same_under_autocast(polar_refine, torch.eye(size) + 0.01 * a)


def test_a_user_built_manifold_gets_the_same():
    class Scaled(Unconstrained):  # a set of one's own: its map is a matmul
        def parametrize(self, z):
            return z @ z.mT / z.shape[-1]

        def as_matrix(self, x):
            return x @ x

    manifold = Scaled(3)
    assert isinstance(manifold, Manifold)
    assert_same_under_autocast(lambda z: manifold.as_matrix(manifold.parametrize(z)),
                               torch.randn(4, 3, 3))
