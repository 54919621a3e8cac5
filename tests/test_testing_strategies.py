"""The hypothesis strategies of mhckit.testing, used as a user would (``@given(points(...))``)."""

import importlib
import sys

import pytest
import torch
from hypothesis import find, given, settings

from mhckit import manifolds as M
from mhckit.testing.strategies import mixer_stacks, points, tangent_vectors, unconstrained

FAST = settings(max_examples=15, deadline=None)


@FAST
@given(points(M.Birkhoff(4)))
def test_points_of_birkhoff_are_doubly_stochastic(x):
    assert x.shape == (4, 4) and x.dtype == torch.float64
    assert float(M.Birkhoff(4).constraint_error(x)) <= 1e-5


@FAST
@given(points(M.Stiefel(5, 2), batch_shape=(3,), dtype=torch.float32))
def test_points_take_a_batch_shape_and_a_dtype(x):
    assert x.shape == (3, 5, 2) and x.dtype == torch.float32
    assert float(M.Stiefel(5, 2).constraint_error(x).max()) <= 1e-5


@FAST
@given(points(M.Grassmann(5, 2)).flatmap(lambda x: tangent_vectors(M.Grassmann(5, 2), x)
                                         .map(lambda u: (x, u))))
def test_tangent_vectors_are_tangent(pair):
    x, u = pair
    assert float((x.mT @ u).abs().max()) <= 1e-10 * (1 + float(u.abs().max()))


def test_unconstrained_reaches_extreme_logits():
    z = find(unconstrained(M.PermutationHull(3)), lambda z: float(z.abs().max()) >= 1e3,
             settings=settings(database=None, derandomize=True))
    assert z.shape == (6,) and torch.isfinite(z).all()


@FAST
@given(mixer_stacks(M.Kronecker(M.PermutationHull(2), M.Orthostochastic(2)), depth=4))
def test_mixer_stacks_are_stacks_of_mixers(stack):
    assert stack.shape == (4, 4, 4)
    assert float((stack.sum(-1) - 1).abs().max()) <= 1e-10


def test_strategies_refuse_what_is_not_a_manifold():
    with pytest.raises(TypeError, match="manifold must be"):
        points(torch.eye(2))
    with pytest.raises(ValueError, match="depth must be >= 1"):
        mixer_stacks(M.Birkhoff(2), 0)


def test_without_hypothesis_the_import_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    monkeypatch.delitem(sys.modules, "mhckit.testing.strategies")
    with pytest.raises(ImportError, match="pip install hypothesis"):
        importlib.import_module("mhckit.testing.strategies")
    monkeypatch.undo()
    importlib.import_module("mhckit.testing.strategies")
