"""Diagnostics over training and ``mhckit analyze``: the numbers logged at every evaluation
are those of :func:`mhckit.nn.diagnostics` on the saved model, and the figure is drawn."""

import math

import pytest
import torch

from mhckit.cli import main
from mhckit.models import GPT, GPTConfig, TrainConfig, load_model, read_metrics, train
from mhckit.models.data import BatchSampler, TextData
from mhckit.models.training import EVAL_SEED_OFFSET
from mhckit.nn import diagnostics, token_diagnostics
from mhckit.nn.report import amax_gains

TINY = dict(n_layer=2, n_head=2, n_embd=16, block_size=16)
BUDGET = dict(batch_size=4, max_iters=6, eval_interval=3, eval_iters=1, warmup_iters=1,
              lr_decay_iters=6, checkpoint_interval=6, sample_tokens=0, learning_rate=3e-2)


def _perturbed(mixer, **config):
    """A model away from its initialisation (dynamic parts nonzero), so that per-token
    matrices differ from their mean."""
    torch.manual_seed(3)
    model = GPT(GPTConfig(**TINY, mixer=mixer, **config)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("mixer", ["hc", "mhc", "shc"])
def test_token_diagnostics_agree_with_diagnostics_on_the_same_batch(mixer):
    model = _perturbed(mixer)
    idx = torch.randint(0, 65, (3, 16), generator=torch.Generator().manual_seed(0))
    ours, reference = token_diagnostics(model, idx), diagnostics(model, idx)
    assert ours.identity_distance == pytest.approx(
        [m.identity_distance for m in reference.mixers], rel=1e-5, abs=1e-6)
    assert ours.constraint_error == pytest.approx(
        max(m.constraint_error for m in reference.mixers), abs=1e-7)
    for mean, m in zip(ours.h_res_mean, reference.mixers, strict=True):
        torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), m.matrix,
                                   rtol=1e-5, atol=1e-6)
    assert min(ours.h_res_spread[1:]) > 1e-3  # dynamic: tokens see different mixers


def test_composite_gain_is_the_token_mean_and_max_of_the_per_token_product():
    """The composite of each token's own ``H_res`` chain, computed here by hand."""
    model = _perturbed("hc")
    idx = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(1))
    blocks = [hc for block in model.transformer.h for hc in (block.attn, block.mlp)]
    streams = []
    hooks = [b.register_forward_pre_hook(lambda m, a: streams.append(a[0])) for b in blocks]
    with torch.no_grad():
        model(idx)
    for h in hooks:
        h.remove()
    gains = []
    for t in range(2 * 16):
        composite = torch.eye(4, dtype=torch.float64)
        for block, x in zip(blocks, streams, strict=True):
            h = block.mixing_matrix(x.reshape(-1, 4, 16)[t]).double()
            composite = h @ composite
        gains.append(amax_gains(composite))
    ours = token_diagnostics(model, idx)
    forward, backward = zip(*gains, strict=True)
    assert ours.composite_gain_forward == pytest.approx(sum(forward) / len(forward), rel=1e-5)
    assert ours.composite_gain_forward_max == pytest.approx(max(forward), rel=1e-5)
    assert ours.composite_gain_backward == pytest.approx(sum(backward) / len(backward),
                                                         rel=1e-5)
    assert ours.composite_gain_backward_max == pytest.approx(max(backward), rel=1e-5)
    assert max(forward) > min(forward) * (1 + 1e-4)  # tokens differ


def test_a_doubly_stochastic_mixer_has_unit_composite_gain_up_to_its_constraint_error():
    """Nonnegative ``H`` with row and column sums within ``e`` of 1: every row and column
    sum of a product of ``L`` of them is within ``(1 + e)^L − 1`` of 1; ``residual`` is I."""
    for mixer in ("mhc", "residual"):
        record = token_diagnostics(_perturbed(mixer),
                                   torch.zeros(1, 16, dtype=torch.long)).as_record()
        slack = (1 + record["constraint_error"]) ** len(record["identity_distance"]) - 1
        for key in ("composite_gain_forward_max", "composite_gain_backward_max"):
            assert abs(record[key] - 1) <= slack + 1e-6


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for mixer in ("hc", "mhc"):
        train(GPTConfig(**TINY, mixer=mixer), TrainConfig(**BUDGET), root / mixer,
              progress=False)
    return root


def test_training_logs_the_diagnostics_of_the_saved_model_at_every_evaluation(two_runs):
    run = two_runs / "mhc"
    records = [r for r in read_metrics(run / "metrics.jsonl") if "diagnostics" in r]
    assert [r["iter"] for r in records] == [0, 3, 6]
    model, _, state = load_model(run / "ckpt.pt")
    tc = TrainConfig(**BUDGET)
    data = TextData.load(tc.dataset)
    x, _ = BatchSampler(data.split("val"), model.config.block_size, tc.batch_size,
                        seed=tc.seed + EVAL_SEED_OFFSET).sample()
    reference = diagnostics(model, x)
    logged = records[-1]["diagnostics"]
    assert logged["identity_distance"] == pytest.approx(
        [m.identity_distance for m in reference.mixers], rel=1e-5, abs=1e-6)
    assert logged["identity_distance_max"] == pytest.approx(
        max(m.identity_distance for m in reference.mixers), rel=1e-5, abs=1e-6)
    assert logged["constraint_error"] == pytest.approx(
        max(m.constraint_error for m in reference.mixers), abs=1e-7)
    assert all(math.isfinite(logged[k]) for k in (
        "composite_gain_forward", "composite_gain_backward", "h_res_spread_mean"))
    assert records[0]["diagnostics"] != logged  # the mixers moved during training


def test_analyze_draws_the_figure_and_prints_the_table_for_two_runs(two_runs, capsys):
    out = two_runs / "analysis.png"
    assert main(["analyze", str(two_runs / "hc"), str(two_runs / "mhc"), "--out",
                 str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.stat().st_size > 20_000  # a drawn figure, not an empty canvas
    table = printed.splitlines()
    assert table[0].split()[:2] == ["run", "mixer"]
    assert table[1].split()[:3] == ["hc", "hc", "6"] and table[2].split()[:3] == [
        "mhc", "mhc", "6"]


def test_analyze_refuses_a_directory_without_a_run_in_one_line(tmp_path, capsys):
    assert main(["analyze", str(tmp_path), "--out", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "analyze" in err[0]
    assert main(["analyze", str(tmp_path), "--out", str(tmp_path / "no" / "a.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
