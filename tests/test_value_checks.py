"""``value_checks``: the switch for argument checks that read tensor values."""

import math

import pytest
import torch

from mhckit.functional import sinkhorn, value_checks, value_checks_enabled
from mhckit.manifolds import Birkhoff, Stiefel


def test_checks_are_on_by_default_and_off_inside_the_block_only():
    assert value_checks_enabled()
    with value_checks(False):
        assert not value_checks_enabled()
        with value_checks(True):
            assert value_checks_enabled()
        assert not value_checks_enabled()
    assert value_checks_enabled()


def test_checks_come_back_after_an_exception_in_the_block():
    with pytest.raises(RuntimeError), value_checks(False):
        raise RuntimeError
    assert value_checks_enabled()


def test_birkhoff_skips_its_on_the_set_test_but_keeps_shape_checks():
    m, off_the_set = Birkhoff(3), torch.full((3, 3), 0.5)
    with pytest.raises(ValueError, match="must be doubly stochastic"):
        m.proju(off_the_set, torch.zeros(3, 3))
    with value_checks(False):
        assert m.proju(off_the_set, torch.zeros(3, 3)).shape == (3, 3)
        with pytest.raises(ValueError, match="trailing shape"):
            m.proju(torch.eye(4) / 4, torch.zeros(4, 4))


def test_nan_checks_of_manifolds_and_sinkhorn_are_skipped_only_inside_the_block():
    nan = torch.full((3, 3), math.nan)
    with pytest.raises(ValueError, match="finite"):
        Stiefel(3, 3).parametrize(torch.full(Stiefel(3, 3).param_shape, math.nan))
    with pytest.raises(ValueError, match="NaN"):
        sinkhorn(nan)
    with value_checks(False):
        assert bool(torch.isnan(sinkhorn(nan, max_iter=5)).all())


def test_traced_code_sees_checks_off():
    seen = []

    def probe(x):
        seen.append(value_checks_enabled())
        return x + 1

    torch._dynamo.reset()
    torch.compile(probe, backend="eager", fullgraph=True)(torch.zeros(2))
    torch._dynamo.reset()
    assert seen == [False]
