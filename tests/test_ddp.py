"""Data-parallel training with torchrun: two CPU processes (gloo) with batch b each follow the
loss trajectory of one process with batch 2b (DDP averages the two half-batch gradients)."""

import os
import re
import subprocess
import sys

import pytest
import torch
from training_scripts import KILL_ON_SECOND_SAVE, PLAIN, REFUSE_SAVE_ON_RANK_0

from mhckit.models import load_checkpoint, read_metrics

FLAGS = ["--mixer", "mhc", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size",
         "16", "--max-iters", "8", "--eval-interval", "4", "--eval-iters", "2",
         "--checkpoint-interval", "4", "--sample-tokens", "10", "--no-progress"]


def run(launcher, out, batch):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, *launcher, "-m", "mhckit", "train", *FLAGS, "--batch-size",
           str(batch), "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_process_ddp_matches_one_process_with_the_global_batch(tmp_path):
    ddp = run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
              tmp_path / "ddp", batch=4)
    run([], tmp_path / "single", batch=8)
    assert ddp.stdout.count("val loss") == 1 + 3  # rank 0's three evaluations and summary
    a = read_metrics(tmp_path / "ddp" / "metrics.jsonl")
    b = read_metrics(tmp_path / "single" / "metrics.jsonl")
    for key in ("loss", "val_loss", "train_loss"):
        got = [r[key] for r in a if key in r]
        want = [r[key] for r in b if key in r]
        assert len(got) == len(want) > 0
        assert got == pytest.approx(want, abs=1e-5)
    ckpt = load_checkpoint(tmp_path / "ddp")
    assert ckpt["step"] == 8 and len(ckpt["rng"]) == 2


def torchrun(script, args, tmp_path):
    path = tmp_path / f"{abs(hash(script))}.py"
    path.write_text(script)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", str(path), "train", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_two_process_run_killed_mid_checkpoint_resumes_bit_identically(tmp_path):
    args = [*FLAGS[:FLAGS.index("--max-iters")], "--max-iters", "12", "--eval-interval", "6",
            "--checkpoint-interval", "4", "--eval-iters", "2", "--lr-decay-iters", "30",
            "--sample-tokens", "0", "--no-progress", "--batch-size", "4"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = torchrun(PLAIN, [*args, "--out", str(whole)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = torchrun(KILL_ON_SECOND_SAVE, [*args, "--out", str(broken)], tmp_path)
    assert killed.returncode != 0
    assert load_checkpoint(broken)["step"] == 4  # the torn second write left the first intact

    resumed = torchrun(PLAIN, [*args, "--out", str(broken), "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    def trajectory(run):
        return [{k: v for k, v in r.items() if k not in ("ms", "tokens_per_s")}
                for r in read_metrics(run / "metrics.jsonl")]

    assert trajectory(broken) == trajectory(whole)
    assert len([r for r in trajectory(whole) if "loss" in r]) == 12
    a, b = (torch.load(d / "ckpt.pt", weights_only=True) for d in (whole, broken))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert len(b["rng"]) == 2  # every rank's generator state, restored rank by rank


def test_a_checkpoint_refused_on_rank_0_stops_every_rank_in_one_line(tmp_path):
    """Rank 0 writes alone; when it cannot, rank 1 learns it (one broadcast) and stops too,
    where it used to wait in the next all-reduce until the process group timed out."""
    args = [*FLAGS[:FLAGS.index("--checkpoint-interval")], "--checkpoint-interval", "2",
            "--sample-tokens", "0", "--no-progress", "--batch-size", "4"]
    done = torchrun(REFUSE_SAVE_ON_RANK_0, [*args, "--out", str(tmp_path / "run")], tmp_path)
    assert done.returncode != 0
    # torchrun's launcher prints its own traceback for failed children; none is mhckit's
    assert not re.search(r'File ".*mhckit/', done.stderr), done.stderr[-3000:]
    assert "mhckit train: error: checkpoint" in done.stderr  # rank 0
    assert "mhckit train: error: rank 0 failed: CheckpointError: checkpoint" in done.stderr
    assert not (tmp_path / "run" / "ckpt.pt").exists()
