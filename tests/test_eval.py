"""``mhckit eval`` on character data, its errors, and ``mhckit compare --resume``."""

import math

import pytest

from mhckit.cli import main
from mhckit.models import GPTConfig, TrainConfig, evaluate_checkpoint, read_metrics, train

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--eval-iters", "1", "--warmup-iters", "1", "--lr-decay-iters",
        "8", "--sample-tokens", "0", "--no-progress"]


def test_bits_per_byte_of_characters_weights_each_by_its_utf8_length(tmp_path):
    text = "aé€🙂\n" * 200  # characters of 1, 2, 3 and 4 bytes, and a newline
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    model = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8)
    train(model, TrainConfig(dataset=str(tmp_path / "t.txt"), batch_size=2, max_iters=1,
                             eval_iters=1, sample_tokens=0), tmp_path / "run", progress=False)
    result = evaluate_checkpoint(tmp_path / "run")
    val = text[int(0.9 * len(text)):]
    targets = val[1:]
    n_bytes = len(targets.encode("utf-8"))
    assert result.tokens == len(targets)
    assert result.bits_per_byte == pytest.approx(
        result.loss * len(targets) / (math.log(2) * n_bytes))


@pytest.mark.parametrize("argv, message", [
    (["eval", "no/such/run"], "no such file"),
    (["eval", "RUN", "--max-tokens", "0"], "max_tokens must be >= 1"),
    (["eval", "RUN", "--dataset", "no/such/data"], "dataset must be"),
])
def test_eval_errors_are_one_line(tmp_path, capsys, argv, message):
    run = tmp_path / "run"
    main(["train", "--max-iters", "1", "--out", str(run), *TINY])
    capsys.readouterr()
    assert main([str(run) if a == "RUN" else a for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mhckit eval: error:") and message in err and err.count("\n") == 1


def test_compare_resume_finishes_an_interrupted_comparison_as_if_never_stopped(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    mixers = ["--mixers", "residual,mhc-lite", "--eval-interval", "2", "--checkpoint-interval",
              "2", *TINY]
    assert main(["compare", "--out", str(whole), "--max-iters", "4", *mixers]) == 0
    assert main(["compare", "--out", str(broken), "--max-iters", "2", *mixers]) == 0  # halfway
    assert main(["compare", "--out", str(broken), "--max-iters", "4", "--resume", *mixers]) == 0
    for mixer in ("residual", "mhc-lite"):
        got, want = (
            [{k: v for k, v in r.items() if k not in ("ms", "tokens_per_s")}
             for r in read_metrics(d / mixer / "metrics.jsonl")] for d in (broken, whole))
        assert got == want and len([r for r in got if "loss" in r]) == 4
    assert (broken / "loss_curves.png").is_file()


def test_compare_into_existing_runs_is_refused_before_training_and_overwrite_replaces_them(
        tmp_path, capsys):
    out = tmp_path / "cmp"
    flags = ["compare", "--out", str(out), "--mixers", "residual", "--max-iters", "1", *TINY]
    assert main(flags) == 0
    before = (out / "residual" / "ckpt.pt").read_bytes()
    capsys.readouterr()
    assert main(flags) == 2
    err = capsys.readouterr().err.strip()
    assert "--resume" in err and "--overwrite" in err and err.count("\n") == 0
    assert (out / "residual" / "ckpt.pt").read_bytes() == before
    assert main([*flags, "--resume", "--overwrite"]) == 2
    assert main([*flags, "--overwrite"]) == 0
    assert [r["iter"] for r in read_metrics(out / "residual" / "metrics.jsonl")
            if "val_loss" in r] == [0, 1]
