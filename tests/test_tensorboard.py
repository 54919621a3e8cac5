"""Metrics copied to TensorBoard (read back with tensorboard's own event reader) and W&B; loss
plots that show iteration 0 and name the data."""

import importlib.util

import pytest

from mhckit.models import GPTConfig, TrainConfig, read_metrics, train
from mhckit.models.logging_backends import scalars
from mhckit.models.plotting import loss_figure

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="tensorboard is in the [dev] extra; the [tensorboard] extra for users")

MODEL = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, mixer="mhc", n_streams=2)


def budget(max_iters, **kwargs):
    return TrainConfig(batch_size=4, max_iters=max_iters, eval_interval=2, eval_iters=1,
                       warmup_iters=1, lr_decay_iters=6, checkpoint_interval=2,
                       sample_tokens=8, tensorboard=True, **kwargs)


def read_events(run):
    events = event_accumulator.EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return events


def test_tensorboard_holds_every_metric_as_a_scalar_at_its_iteration(tmp_path):
    train(MODEL, budget(4), tmp_path, progress=False)
    events = read_events(tmp_path)
    tags = set(events.Tags()["scalars"])
    assert {"loss", "lr", "tokens_per_s", "train_loss", "val_loss",
            "diagnostics/constraint_error", "diagnostics/composite_gain_forward"} <= tags
    records = read_metrics(tmp_path / "metrics.jsonl")
    for tag in ("loss", "lr", "val_loss"):
        expected = [(r["iter"], r[tag]) for r in records if tag in r]
        got = [(e.step, e.value) for e in events.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in expected]
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6)
    assert "sample/text_summary" in events.Tags()["tensors"]  # samples as text


def test_resumed_run_replaces_the_events_past_its_checkpoint(tmp_path):
    train(MODEL, budget(3), tmp_path, progress=False)  # logs iterations 0-2, saves at 2 and 3
    train(MODEL, budget(5), tmp_path, resume=tmp_path, progress=False)
    steps = [e.step for e in read_events(tmp_path).Scalars("loss")]
    assert steps == [0, 1, 2, 3, 4]  # none twice


def test_scalars_flatten_nested_numbers_and_skip_the_rest():
    record = {"iter": 3, "loss": 2.5, "sample": "abc", "diagnostics": {
        "constraint_error": 1e-7, "identity_distance": [0.1, 0.2], "gain": None,
        "nested": {"x": 1}}, "flag": True, "nan": float("nan")}
    assert dict(scalars(record)) == {"loss": 2.5, "diagnostics/constraint_error": 1e-7,
                                     "diagnostics/nested/x": 1.0}


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb installed")
def test_wandb_without_the_package_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="wandb logging needs the wandb package"):
        train(MODEL, budget(1, wandb="mhckit-test"), tmp_path, progress=False)


def test_loss_plot_frames_iteration_zero_labels_both_curves_and_names_the_data():
    records = [{"iter": 0, "loss": 4.2}, {"iter": 1, "loss": 3.0},
               {"iter": 0, "train_loss": 4.17, "val_loss": 4.18},
               {"iter": 1, "train_loss": 2.9, "val_loss": 3.1},
               {"iter": 2, "train_loss": 2.5, "val_loss": 2.7}]
    ax = loss_figure({"mhc": records}, "corpus, byte tokens").axes[0]
    low, high = ax.get_ylim()
    assert low < 2.7 and high > 4.2  # the first points (about ln vocab) are in the frame
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mhc train",
                                                                   "mhc val (2.700)"]
    assert ax.get_title() == "corpus, byte tokens"
