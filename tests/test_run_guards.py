"""Fault tests of a training run (issue 12, sections 1-3): a diverging run, a second run on
the same directory, a checkpoint of another run, a budget already spent, a full disk. Each
leaves what was saved intact and ends in one line on stderr, never a traceback."""

import errno
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from training_scripts import PLAIN

from mhckit.cli import main
from mhckit.models import GPT, load_checkpoint, read_metrics
from mhckit.models.nonfinite import NonFiniteGuard

CORPUS = "".join(f"{i}: to be, or not to be, that is the question.\n" for i in range(400))
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--eval-iters", "2", "--warmup-iters", "2", "--lr-decay-iters",
        "30", "--sample-tokens", "0", "--eval-interval", "100", "--checkpoint-interval", "100",
        "--no-progress"]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS)
    return str(path)


def train_cli(out, corpus, *flags):
    return main(["train", "--out", str(out), "--dataset", corpus, *TINY, *flags])


def run_files(out):
    return {p.name: p.read_bytes() for p in out.iterdir()}


def strict_json_records(out):
    """Every line of metrics.jsonl parsed as strict JSON (NaN and Infinity refused)."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return [json.loads(line, parse_constant=refuse)
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def one_line(err):
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# -- 1. divergence ---------------------------------------------------------------------------
@pytest.mark.parametrize("mixer, flags", [
    ("residual", []),
    ("mhc", []),
    ("mhc", ["--sample-tokens", "8", "--log-interval", "5"]),  # read only every 5 steps
])
def test_a_diverging_resume_stops_naming_the_iteration_and_keeps_the_checkpoint(
        tmp_path, corpus, capsys, mixer, flags):
    out = tmp_path / "run"
    assert train_cli(out, corpus, "--mixer", mixer, "--max-iters", "4") == 0
    good = (out / "ckpt.pt").read_bytes()
    capsys.readouterr()
    code = main(["train", "--resume", "--out", str(out), "--learning-rate", "1e6", "--min-lr",
                 "1e6", "--max-iters", "30", "--no-progress", *flags])
    err = one_line(capsys.readouterr().err)
    assert code == 3
    # which goes non-finite first, the loss or the gradient norm, depends on the thread count
    assert re.fullmatch(r"mhckit train: error: iteration (\d+): non-finite "
                        r"(loss|gradient norm) .*\n", err)
    assert (out / "ckpt.pt").read_bytes() == good
    assert len(strict_json_records(out)) == len(read_metrics(out / "metrics.jsonl"))


def test_stop_policy_reads_the_device_only_where_training_reads_anyway(tmp_path, corpus,
                                                                      monkeypatch):
    """``observe`` transfers nothing; the flag is read with the logged loss (every 5th step
    and the last), before each evaluation and before the checkpoint: 3 + 2 + 1 reads for 10
    steps."""
    reads = []
    observe, read, check = (getattr(NonFiniteGuard, name) for name in ("observe", "read",
                                                                       "check"))

    def refuse(*args):
        raise AssertionError("observe read a tensor back to the host")

    def observe_without_reading(self, *args):
        with monkeypatch.context() as m:
            for name in ("item", "tolist", "__bool__", "__float__", "cpu", "numpy"):
                m.setattr(torch.Tensor, name, refuse)
            observe(self, *args)

    monkeypatch.setattr(NonFiniteGuard, "observe", observe_without_reading)
    monkeypatch.setattr(NonFiniteGuard, "read", lambda self: reads.append("log") or read(self))
    monkeypatch.setattr(NonFiniteGuard, "check",
                        lambda self: reads.append("check") or check(self))
    assert train_cli(tmp_path / "run", corpus, "--max-iters", "10", "--log-interval", "5") == 0
    assert sorted(reads) == ["check"] * 3 + ["log"] * 3


def nan_loss_at(monkeypatch, steps):
    """Make the training loss NaN at the given (0-based) training forward calls."""
    forward, calls = GPT.forward, []

    def forward_with_nan(self, idx, targets=None):
        logits, loss = forward(self, idx, targets)
        if self.training and targets is not None:
            calls.append(None)
            if len(calls) - 1 in steps:
                loss = loss * math.nan
        return logits, loss

    monkeypatch.setattr(GPT, "forward", forward_with_nan)


def test_skip_policy_skips_the_update_of_a_nonfinite_step_and_counts_it(
        tmp_path, corpus, monkeypatch):
    nan_loss_at(monkeypatch, {2})
    out = tmp_path / "run"
    assert train_cli(out, corpus, "--max-iters", "6", "--on-nonfinite", "skip") == 0
    steps = [r for r in strict_json_records(out) if "loss" in r]
    assert [r["iter"] for r in steps if r.get("skipped")] == [2]
    assert steps[2]["loss"] is None
    assert [r["skipped_steps"] for r in steps] == [0, 0, 1, 1, 1, 1]
    ckpt = load_checkpoint(out)
    assert ckpt["nonfinite"] == {"skipped": 1, "in_a_row": 0}
    # as torch.amp.GradScaler: the optimizer never saw the step (6 iterations, 5 updates)
    assert {float(s["step"]) for s in ckpt["optimizer"]["adamw"]["state"].values()} == {5.0}
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_skip_policy_stops_after_max_nonfinite_steps_in_a_row(tmp_path, corpus, monkeypatch,
                                                              capsys):
    nan_loss_at(monkeypatch, set(range(3, 100)))
    out = tmp_path / "run"
    code = train_cli(out, corpus, "--max-iters", "10", "--checkpoint-interval", "2",
                     "--on-nonfinite", "skip", "--max-nonfinite-steps", "3")
    err = one_line(capsys.readouterr().err)
    assert code == 3 and "iteration 5: 3 non-finite steps in a row (iterations 3 to 5" in err
    assert load_checkpoint(out)["step"] == 4  # written at 2 and 4 (skipped steps 3, 4: finite)


def test_compare_reports_a_diverging_mixer_in_its_row_and_trains_the_others(
        tmp_path, corpus, capsys, monkeypatch):
    """One mixer going non-finite does not end the comparison: its row says where it
    diverged, the others train, the plot is drawn, exit code 3 and one line per diverged
    mixer on stderr."""
    forward = GPT.forward

    def nan_for_mhc(self, idx, targets=None):
        logits, loss = forward(self, idx, targets)
        if self.training and targets is not None and self.config.mixer == "mhc":
            loss = loss * math.nan
        return logits, loss

    monkeypatch.setattr(GPT, "forward", nan_for_mhc)
    out = tmp_path / "cmp"
    code = main(["compare", "--mixers", "residual,mhc,hc", "--out", str(out), "--dataset",
                 corpus, *TINY, "--max-iters", "3"])
    captured = capsys.readouterr()
    assert code == 3
    rows = {line.split()[0]: line for line in captured.out.splitlines() if line.strip()}
    assert "diverged" in rows["mhc"] and "iteration 0: non-finite loss" in rows["mhc"]
    assert math.isfinite(float(rows["hc"].split()[1]))
    assert math.isfinite(float(rows["residual"].split()[1]))
    assert re.fullmatch(r"mhckit compare: error: mhc diverged at iteration 0: non-finite loss "
                        r"nan.*\n", one_line(captured.err))
    assert (out / "loss_curves.png").is_file() and (out / "hc" / "ckpt.pt").is_file()
    assert not (out / "mhc" / "ckpt.pt").exists()  # nothing written after the non-finite step


# -- 2. a run directory belongs to one run ----------------------------------------------------
def test_training_into_a_run_without_resume_is_refused_and_overwrite_replaces_it(
        tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert train_cli(out, corpus, "--max-iters", "2") == 0
    before = run_files(out)
    capsys.readouterr()
    assert train_cli(out, corpus, "--max-iters", "2", "--mixer", "hc") == 2
    err = one_line(capsys.readouterr().err)
    assert "holds a run" in err and "--resume" in err and "--overwrite" in err
    assert run_files(out) == before

    assert train_cli(out, corpus, "--max-iters", "2", "--mixer", "hc", "--overwrite") == 0
    records = read_metrics(out / "metrics.jsonl")
    assert records[0]["run"]["model"]["mixer"] == "hc"
    assert [r["iter"] for r in records if "loss" in r] == [0, 1]  # nothing of the old run


def test_a_second_live_run_refuses_and_a_dead_runs_lock_is_taken_over(tmp_path, corpus,
                                                                       capsys):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    holder = subprocess.Popen(
        [sys.executable, "-c", PLAIN, "train", "--out", str(out), "--dataset", corpus, *TINY,
         "--max-iters", "1000000"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.jsonl").is_file():  # written once the directory is held
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert train_cli(out, corpus, "--max-iters", "2") == 2
        err = one_line(capsys.readouterr().err)
        assert f"in use by process {holder.pid} " in err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert train_cli(out, corpus, "--max-iters", "2", "--overwrite") == 0
    err = capsys.readouterr().err
    assert f"taking over the lock left by process {holder.pid} " in err
    assert not (out / ".lock").exists()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Runs ``a`` (residual) and ``b`` (hc) of 2 iterations on the same corpus."""
    root = tmp_path_factory.mktemp("runs")
    (root / "corpus.txt").write_text(CORPUS)
    for name, mixer in (("a", "residual"), ("b", "hc")):
        assert train_cli(root / name, str(root / "corpus.txt"), "--mixer", mixer,
                         "--max-iters", "2") == 0
    return root


@pytest.mark.parametrize("how", ["copied into the directory", "--resume OTHER"])
def test_resume_refuses_a_checkpoint_of_another_run_listing_the_fields(tmp_path, two_runs,
                                                                       capsys, how):
    shutil.copytree(two_runs, tmp_path, dirs_exist_ok=True)
    a, b = tmp_path / "a", tmp_path / "b"
    if how == "--resume OTHER":
        argv = ["--resume", str(b / "ckpt.pt")]
    else:
        shutil.copy(b / "ckpt.pt", a / "ckpt.pt")
        argv = ["--resume"]
    before = run_files(a)
    capsys.readouterr()
    assert main(["train", *argv, "--out", str(a), "--max-iters", "4", "--no-progress"]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"run directory {a}: holds another run than checkpoint" in err
    assert "model.mixer: directory 'residual', checkpoint 'hc'" in err
    assert run_files(a) == before


@pytest.mark.parametrize("flag, value, field", [
    ("--dataset", "other.txt", "data: checkpoint 'sha256:"),
    ("--seed", "7", "seed: checkpoint 1337, given 7"),
])
def test_resume_with_other_data_or_seed_is_refused(tmp_path, corpus, capsys, flag, value,
                                                   field):
    out = tmp_path / "run"
    assert train_cli(out, corpus, "--max-iters", "2") == 0
    other = tmp_path / "other.txt"  # the same characters, another text
    other.write_text(CORPUS[::-1])
    capsys.readouterr()
    value = str(other) if flag == "--dataset" else value
    assert main(["train", "--resume", "--out", str(out), "--max-iters", "4", flag, value,
                 "--no-progress"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "another run" in err and field in err


def test_resume_below_the_checkpoint_step_reports_it_and_writes_nothing(tmp_path, corpus,
                                                                        capsys):
    out = tmp_path / "run"
    assert train_cli(out, corpus, "--max-iters", "4") == 0
    before = run_files(out)
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--max-iters", "2",
                 "--no-progress"]) == 0
    assert "already at step 4 (--max-iters 2)" in capsys.readouterr().out
    assert run_files(out) == before


# -- a full disk -------------------------------------------------------------------------------
def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_previous_one(
        tmp_path, corpus, capsys, monkeypatch):
    save, calls = torch.save, []

    def full_disk_on_second_save(obj, f, *args, **kwargs):
        calls.append(None)
        if len(calls) == 2:
            f.write(b"PK\x03\x04partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk_on_second_save)
    out = tmp_path / "run"
    assert train_cli(out, corpus, "--max-iters", "4", "--checkpoint-interval", "2") == 2
    err = one_line(capsys.readouterr().err)
    assert "No space left on device" in err and "the previous one is intact" in err
    assert load_checkpoint(out)["step"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["ckpt.pt", "loss.png", "metrics.jsonl",
                                                     "samples.txt"]  # no tmp file, no lock
    monkeypatch.setattr(torch, "save", save)
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0
    assert load_checkpoint(out)["step"] == 4
