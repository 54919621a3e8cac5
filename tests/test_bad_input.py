"""The Python API refuses what it cannot compute (issue 12, sections 5 and 6).

One table of bad calls over the public constructors and functions: each must raise
``ValueError`` or ``TypeError`` whose message names the argument (never an ``IndexError`` or
``_LinAlgError`` from deep in torch, never a NaN result). Then a property: a finite input of
the magnitude a parametrization accepts never gives a NaN point.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from manifold_cases import CASES

from mhckit import manifolds as M
from mhckit.functional import cayley, sinkhorn
from mhckit.functional.validation import (
    check_bool,
    check_choice,
    check_dtype,
    check_float,
    check_size,
    check_tensor,
)
from mhckit.manifolds.base import CAYLEY_BOUND
from mhckit.models import GPT, GPTConfig, TrainConfig, resolve_device, train
from mhckit.models.config import load_config
from mhckit.nn import HyperConnection
from mhckit.optim import RiemannianAdam, RiemannianSGD

NAN, INF = math.nan, math.inf


@dataclass(frozen=True)
class Bad:
    """A call that must raise ``error`` with a message matching ``names`` (the argument)."""

    id: str
    call: Callable[[], object]
    error: type[Exception]
    names: str


def _param() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.randn(3))]


def _gpt() -> GPT:
    return GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=8, vocab_size=10,
                         mixer="mhc", n_streams=2))


def _manifold_rows() -> list[Bad]:
    """Per manifold: complex and integer ``z``, NaN ``z``, an integer ``random`` dtype and a
    NaN point given to ``constraint_error``."""
    rows = []
    for name, factory in CASES.items():
        m = factory()
        rows += [
            Bad(f"{name}-parametrize-complex",
                lambda m=m: m.parametrize(torch.zeros(m.param_shape, dtype=torch.complex64)),
                TypeError, "z must have a real floating dtype"),
            Bad(f"{name}-parametrize-int",
                lambda m=m: m.parametrize(torch.zeros(m.param_shape, dtype=torch.int64)),
                TypeError, "z must have a floating dtype"),
            Bad(f"{name}-parametrize-nan",
                lambda m=m: m.parametrize(torch.full(m.param_shape, NAN)),
                ValueError, "z must be finite"),
            Bad(f"{name}-random-int-dtype", lambda m=m: m.random(dtype=torch.int64),
                TypeError, "dtype must be a floating dtype"),
            Bad(f"{name}-random-complex-dtype", lambda m=m: m.random(dtype=torch.complex64),
                TypeError, "dtype must be a real floating dtype"),
            Bad(f"{name}-constraint-error-nan",
                lambda m=m: m.constraint_error(torch.full(m.shape, NAN)),
                ValueError, "x must be finite"),
        ]
    return rows


BAD_CALLS: list[Bad] = [
    *_manifold_rows(),
    # Cayley parametrizations at 1e20: a clear error, never _LinAlgError or a wrong frame
    *(Bad(f"{cls.__name__}{args}-parametrize-1e20",
          lambda cls=cls, args=args: cls(*args).parametrize(
              torch.full(cls(*args).param_shape, 1e20)),
          ValueError, "z must have entries of magnitude")
      for cls, args in ((M.Grassmann, (4, 2)), (M.SpectralSphere, (4,)), (M.Stiefel, (3, 3)),
                        (M.Orthostochastic, (3,)))),
    Bad("birkhoff-n-zero", lambda: M.Birkhoff(0), ValueError, "n must be >= 1"),
    Bad("stiefel-p-float", lambda: M.Stiefel(4, 2.0), TypeError, "p must be an int"),
    Bad("cayley-complex", lambda: cayley(torch.zeros(3, 3, dtype=torch.complex64)), TypeError,
        "a must have a real floating dtype"),
    Bad("cayley-int", lambda: cayley(torch.zeros(3, 3, dtype=torch.int64)), TypeError,
        "a must have a floating dtype"),
    Bad("kromhc-powers-of-two-string", lambda: HyperConnection(8, 4, "kromhc",
                                                               powers_of_two="no"),
        TypeError, "powers_of_two must be True or False"),
    Bad("sinkhorn-complex", lambda: sinkhorn(torch.zeros(3, 3, dtype=torch.complex64)),
        TypeError, "logits"),
    # optimizers: torch.optim's rules, and NaN / inf refused everywhere
    *(Bad(f"sgd-{key}-{value}", lambda key=key, value=value: RiemannianSGD(
        _param(), **{"lr": 0.1, key: value}), ValueError, key)
      for key, value in (("lr", NAN), ("lr", INF), ("lr", -1.0), ("weight_decay", NAN),
                         ("weight_decay", -0.1), ("momentum", 1.5), ("momentum", NAN),
                         ("momentum", -0.5), ("dampening", NAN), ("dampening", 2.0))),
    *(Bad(f"adam-{key}-{value}", lambda key=key, value=value: RiemannianAdam(
        _param(), **{key: value}), ValueError, key.split("[")[0])
      for key, value in (("lr", NAN), ("lr", INF), ("eps", NAN), ("eps", INF),
                         ("weight_decay", NAN), ("betas", (NAN, 0.9)), ("betas", (0.9, 1.0)),
                         ("betas", (0.9, INF)))),
    Bad("sgd-nesterov-string", lambda: RiemannianSGD(_param(), lr=0.1, momentum=0.9,
                                                     nesterov="no"), TypeError, "nesterov"),
    Bad("adam-amsgrad-string", lambda: RiemannianAdam(_param(), amsgrad="yes"), TypeError,
        "amsgrad"),
    # HyperConnection
    Bad("hc-input-float64", lambda: HyperConnection(8, 4, "mhc")(
        torch.zeros(2, 4, 8, dtype=torch.float64)), TypeError, "float64.*float32"),
    Bad("hc-input-nan", lambda: HyperConnection(8, 4, "mhc")(torch.full((2, 4, 8), NAN)),
        ValueError, "^x must be finite"),
    Bad("hc-input-int", lambda: HyperConnection(8, 4, "mhc")(
        torch.zeros(2, 4, 8, dtype=torch.int64)), TypeError, "^x must have a floating"),
    Bad("hc-one-stream-mhc", lambda: HyperConnection(8, 1, "mhc"), ValueError,
        "n_streams must be >= 2"),
    Bad("hc-gate-init-nan", lambda: HyperConnection(8, 4, "mhc", gate_init=NAN), ValueError,
        "gate_init"),
    Bad("hc-gate-init-string", lambda: HyperConnection(8, 4, "mhc", gate_init="0.1"),
        TypeError, "gate_init"),
    Bad("hc-branch-string", lambda: HyperConnection(8, 4, "mhc", branch="x"), TypeError,
        "branch"),
    Bad("hc-dynamic-no", lambda: HyperConnection(8, 4, "mhc", dynamic="no"), TypeError,
        "dynamic must be True or False"),
    Bad("hc-riemannian-yes", lambda: HyperConnection(8, 4, "mhc", riemannian="yes"),
        TypeError, "riemannian must be True or False"),
    Bad("hc-unknown-mixer", lambda: HyperConnection(8, 4, "foo"), ValueError, "mixer"),
    # GPT
    Bad("gptconfig-bias-no", lambda: GPTConfig(bias="no"), TypeError, "GPTConfig.bias"),
    Bad("gptconfig-dynamic-string", lambda: GPTConfig(dynamic="false"), TypeError,
        "GPTConfig.dynamic"),
    Bad("gptconfig-dropout-nan", lambda: GPTConfig(dropout=NAN), ValueError,
        "GPTConfig.dropout"),
    Bad("gptconfig-unknown-mixer", lambda: GPTConfig(mixer="foo"), ValueError, "mixer"),
    Bad("gptconfig-mixer-int", lambda: GPTConfig(mixer=3), TypeError, "GPTConfig.mixer"),
    Bad("gpt-token-id-too-large", lambda: _gpt()(torch.tensor([[10]])), ValueError,
        "idx must hold token ids in \\[0, vocab_size=10\\)"),
    Bad("gpt-token-id-negative", lambda: _gpt()(torch.tensor([[-1]])), ValueError, "idx"),
    Bad("gpt-one-dimensional", lambda: _gpt()(torch.tensor([1, 2])), ValueError,
        "idx must have shape \\(B, T\\)"),
    Bad("gpt-no-positions", lambda: _gpt()(torch.zeros(1, 0, dtype=torch.long)), ValueError,
        "T >= 1"),
    Bad("gpt-float-ids", lambda: _gpt()(torch.zeros(1, 2)), TypeError, "idx"),
    Bad("gpt-targets-out-of-range", lambda: _gpt()(torch.zeros(1, 2, dtype=torch.long),
                                                   torch.full((1, 2), 99)),
        ValueError, "targets"),
    Bad("generate-top-k-zero", lambda: _gpt().generate(torch.tensor([[1]]), 2, top_k=0),
        ValueError, "top_k"),
    Bad("generate-top-k-negative", lambda: _gpt().generate(torch.tensor([[1]]), 2, top_k=-1),
        ValueError, "top_k"),
    Bad("generate-temperature-nan",
        lambda: _gpt().generate(torch.tensor([[1]]), 2, temperature=NAN), ValueError,
        "temperature"),
    Bad("generate-temperature-zero",
        lambda: _gpt().generate(torch.tensor([[1]]), 2, temperature=0.0), ValueError,
        "temperature"),
    Bad("generate-max-new-tokens-negative",
        lambda: _gpt().generate(torch.tensor([[1]]), -1), ValueError, "max_new_tokens"),
    # TrainConfig: every field by type and range
    *(Bad(f"trainconfig-{key}-{value!r}", lambda key=key, value=value: TrainConfig(
        **{key: value}), error, f"TrainConfig.{key}")
      for key, value, error in (
          ("learning_rate", NAN, ValueError), ("learning_rate", -1.0, ValueError),
          ("learning_rate", INF, ValueError), ("batch_size", 2.5, TypeError),
          ("batch_size", 0, ValueError), ("device", "tpu", ValueError),
          ("device", "cuda:", ValueError), ("beta2", 2.0, ValueError),
          ("beta1", NAN, ValueError), ("weight_decay", -1.0, ValueError),
          ("grad_clip", -1.0, ValueError), ("grad_clip", NAN, ValueError),
          ("min_lr", 1.0, ValueError), ("compile", "no", TypeError),
          ("decay_lr", 1, TypeError), ("seed", -1, ValueError), ("max_iters", -1, ValueError),
          ("dtype", "float16", ValueError), ("dataset", "", ValueError))),
    Bad("resolve-device-missing-cuda", lambda: resolve_device("cuda:99"), ValueError,
        "device 'cuda:99' is not available"),
    Bad("train-manifold-instance", lambda: train(GPTConfig(mixer=M.Birkhoff(4)), TrainConfig(),
                                                 "unused"), TypeError, "GPTConfig.mixer"),
    # the shared checkers themselves
    Bad("check-bool-string", lambda: check_bool("no", "flag"), TypeError, "flag"),
    Bad("check-float-inf", lambda: check_float(INF, "rate"), ValueError, "rate"),
    Bad("check-float-bool", lambda: check_float(True, "rate"), TypeError, "rate"),
    Bad("check-size-bool", lambda: check_size(True, "n"), TypeError, "n"),
    Bad("check-dtype-string", lambda: check_dtype("float32"), TypeError, "dtype"),
    Bad("check-choice", lambda: check_choice("x", "mode", ("a", "b")), ValueError, "mode"),
    Bad("check-tensor-bound", lambda: check_tensor(torch.tensor([3.0]), "z", bound=1.0),
        ValueError, "z must have entries of magnitude <= 1"),
    Bad("check-tensor-list", lambda: check_tensor([1.0], "z"), TypeError, "z"),
]


@pytest.mark.parametrize("bad", BAD_CALLS, ids=[b.id for b in BAD_CALLS])
def test_bad_input_raises_an_error_naming_the_argument(bad):
    with pytest.raises(bad.error, match=bad.names):
        bad.call()


def test_the_table_covers_every_manifold_of_the_harness():
    ids = {b.id.rsplit("-parametrize-complex", 1)[0] for b in BAD_CALLS}
    assert set(CASES) <= ids


def test_a_config_file_cannot_set_vocab_size(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[model]\nvocab_size = 10\n")
    with pytest.raises(ValueError, match="vocab_size is set from the dataset"):
        load_config(path)


def test_nan_point_is_reported_not_finite_by_check_point():
    ok, reason = M.Birkhoff(3).check_point_on_manifold(torch.full((3, 3), NAN), explain=True)
    assert not ok and "not finite" in reason


def test_hyperconnection_input_of_another_dtype_is_computed_under_autocast():
    hc = HyperConnection(8, 4, "mhc")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = hc(torch.randn(2, 4, 8).bfloat16())
    assert torch.isfinite(out).all()


def test_generate_samples_valid_tokens_after_the_checks():
    out = _gpt().generate(torch.tensor([[1]]), 3, top_k=2,
                          generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 4) and int(out.min()) >= 0 and int(out.max()) < 10


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=10)
@given(scale=st.floats(min_value=-CAYLEY_BOUND, max_value=CAYLEY_BOUND,
                       allow_nan=False, allow_infinity=False),
       seed=st.integers(0, 2**16))
def test_a_finite_input_never_gives_nan(name, scale, seed):
    """Every input a parametrization accepts (finite, ``|z| <= CAYLEY_BOUND``) gives a
    finite point of the set, in float32 and float64."""
    m = CASES[name]()
    generator = torch.Generator().manual_seed(seed)
    for dtype in (torch.float32, torch.float64):
        direction = torch.rand(4, *m.param_shape, generator=generator, dtype=dtype) * 2 - 1
        point = m.parametrize(scale * direction)
        assert torch.isfinite(point).all(), (name, scale, dtype)
