"""Mutation tests of ``mhckit.testing.assert_manifold``: one property broken per variant.

Every built-in manifold passes the contract (tests/test_manifold_harness.py); here each
deliberately broken subclass of a built-in set must be rejected, and the report must name
the broken property with its measured error and tolerance.
"""

import pytest
import torch

from mhckit import manifolds as M
from mhckit.testing import PROPERTIES, assert_manifold


class NonTangentProjection(M.Stiefel):
    def proju(self, x, u):
        return u + 0.1 * x  # has a normal component


class NonIdempotentProjection(M.Stiefel):
    def proju(self, x, u):
        return 0.5 * super().proju(x, u)  # tangent, linear, but P∘P = P/2


class MetricOffByAFactor(M.Birkhoff):
    def inner(self, x, u, v=None, *, keepdim=False):
        return 2.0 * super().inner(x, u, v, keepdim=keepdim)


class RetractionLeavingTheSet(M.Stiefel):
    def retr(self, x, u):
        return x + u  # first order, but off the set


class FirstOrderWrongRetraction(M.SpectralSphere):
    def retr(self, x, u):
        return self.projx(x + 2.0 * u)  # on the set, wrong velocity


class NonLinearTransport(M.Stiefel):
    def transp(self, x, y, v):
        return self.proju(y, v * v.norm())  # tangent but quadratic in v


class _DoubledBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        return z.clone()

    @staticmethod
    def backward(ctx, grad):
        return 2.0 * grad


class WrongParametrizeGradient(M.SpectralSphere):
    def parametrize(self, z):
        return super().parametrize(_DoubledBackward.apply(z))


class BatchMishandled(M.Stiefel):
    def inner(self, x, u, v=None, *, keepdim=False):
        v = u if v is None else v
        return (u * v).sum()  # sums over the batch too


class GradientNotRiesz(M.Birkhoff):
    def egrad2rgrad(self, x, u):
        return self.proju(x, u)  # the Euclidean projection, not the Fisher gradient


class TransportLeavingTheTangentSpace(M.SpectralSphere):
    def transp(self, x, y, v):
        return v + 0.1  # linear up to a constant, rows no longer sum to 0


MUTANTS = [
    (NonTangentProjection(5, 3), "proju tangent"),
    (NonIdempotentProjection(5, 3), "proju idempotent"),
    (MetricOffByAFactor(4), "egrad2rgrad metric"),
    (RetractionLeavingTheSet(5, 3), "retr"),
    (FirstOrderWrongRetraction(4), "retraction first order"),
    (NonLinearTransport(5, 3), "transport linear"),
    (WrongParametrizeGradient(3), "parametrize gradcheck"),
    (BatchMishandled(5, 3), "batch"),
    (GradientNotRiesz(4), "egrad2rgrad metric"),
    (TransportLeavingTheTangentSpace(4), "transport tangent"),
]


@pytest.mark.parametrize(("mutant", "broken"), MUTANTS,
                         ids=[type(m).__name__ for m, _ in MUTANTS])
def test_assert_manifold_rejects_a_broken_variant(mutant, broken):
    with pytest.raises(AssertionError) as info:
        assert_manifold(mutant)
    report = str(info.value)
    assert f"- {broken}" in report, report
    assert "measured" in report and "tolerance" in report


def test_the_report_names_the_property_the_dtype_and_the_numbers():
    with pytest.raises(AssertionError) as info:
        assert_manifold(MetricOffByAFactor(3), dtypes=[torch.float64],
                        properties=["egrad2rgrad_metric_consistent"])
    (line,) = [s for s in str(info.value).splitlines() if s.startswith("  - ")]
    assert line.startswith("  - egrad2rgrad metric [float64]")
    assert "tolerance 1.5e-08" in line  # √eps(float64)


def test_the_unbroken_parents_pass():
    for parent in (M.Stiefel(5, 3), M.Birkhoff(4), M.SpectralSphere(4)):
        assert_manifold(parent, properties=[p for p in PROPERTIES if "gradcheck" not in p])


def test_assert_manifold_leaves_the_global_rng_alone():
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    assert_manifold(M.Unconstrained(2))
    torch.testing.assert_close(torch.rand(3), expected)


def test_assert_manifold_checks_its_arguments():
    with pytest.raises(TypeError, match="manifold must be a mhckit.manifolds.Manifold"):
        assert_manifold(torch.eye(3))
    with pytest.raises(ValueError, match="properties must be names"):
        assert_manifold(M.Unconstrained(2), properties=["no_such_property"])
