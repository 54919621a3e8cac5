"""One suite over every manifold in tests/manifold_cases.py: ``mhckit.testing.assert_manifold``.

The contract lives in the library (:mod:`mhckit.testing.contract`) so a user runs the same
checks on a set of their own; here each (manifold, property) pair is one test, in float32
and float64. What is not a property of the geometry -- geoopt's optimizer keeping a point
on the set, argument checking -- stays here.
"""

import geoopt
import pytest
import torch
from manifold_cases import CASES

from mhckit.testing import PROPERTIES, assert_manifold


@pytest.fixture(params=list(CASES), ids=list(CASES))
def manifold(request):
    return CASES[request.param]()


@pytest.mark.parametrize("prop", list(PROPERTIES))
def test_manifold_contract(manifold, prop):
    assert_manifold(manifold, properties=[prop])


def test_geoopt_riemannian_adam_stays_on_the_set(manifold):
    torch.manual_seed(1)
    point = geoopt.ManifoldParameter(manifold.random(*manifold.shape), manifold=manifold)
    target = torch.randn(manifold.n, manifold.n)
    optimizer = geoopt.optim.RiemannianAdam([point], lr=0.05, stabilize=5)

    def loss():
        return ((manifold.as_matrix(point) - target) ** 2).sum()

    first = float(loss().detach())
    for _ in range(20):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
        err = float(manifold.constraint_error(point.detach()).max())
        assert err <= manifold.constraint_atol(torch.float32), err
    assert float(loss().detach()) < first


def test_bad_arguments_raise_naming_them(manifold):
    wrong = tuple(s + 1 for s in manifold.shape)
    with pytest.raises(ValueError):
        manifold.random(*wrong)
    with pytest.raises((ValueError, TypeError)):
        manifold.parametrize(torch.randn(*(s + 1 for s in manifold.param_shape)))
    with pytest.raises(TypeError):
        manifold.parametrize(torch.ones(manifold.param_shape, dtype=torch.int64))
    with pytest.raises(ValueError):
        manifold.parametrize(torch.full(manifold.param_shape, float("nan")))
