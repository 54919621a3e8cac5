"""FSDP2 training with torchrun (two gloo CPU processes): a run killed mid-checkpoint resumes
bit-identically; its gathered checkpoint continues in one process along the two-process
trajectory; Riemannian-mode mixer parameters stay whole and bit-identical on every rank."""

import os
import subprocess
import sys

import pytest
import torch
from training_scripts import KILL_ON_SECOND_SAVE, PLAIN, SAVE_REPLICATED

from mhckit.models import GPT, GPTConfig, TrainConfig, load_checkpoint, read_metrics
from mhckit.models.distributed import Distributed
from mhckit.models.fsdp import ShardedGPT

FLAGS = ["--parallel", "fsdp", "--mixer", "mhc", "--mixer-options", '{"riemannian": true}',
         "--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
         "--max-iters", "12", "--eval-interval", "6", "--eval-iters", "2",
         "--checkpoint-interval", "4", "--lr-decay-iters", "30", "--learning-rate", "1e-2",
         "--grad-clip", "0.05", "--sample-tokens", "5", "--no-progress"]  # clipping bites


def launch(script, args, tmp_path, processes=2):
    path = tmp_path / f"{abs(hash(script))}.py"
    path.write_text(script)
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                str(processes)] if processes > 1 else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *launcher, str(path), "train", *FLAGS, *args],
                          env=env, capture_output=True, text=True, timeout=600)


def trajectory(run, keys=None):
    return [{k: v for k, v in r.items() if k not in ("ms", "tokens_per_s")}
            for r in read_metrics(run / "metrics.jsonl") if keys is None or keys & set(r)]


@pytest.mark.slow
def test_fsdp_run_killed_mid_checkpoint_resumes_exactly_in_two_or_one_processes(tmp_path):
    whole, broken, single = tmp_path / "whole", tmp_path / "broken", tmp_path / "single"
    done = launch(SAVE_REPLICATED, ["--batch-size", "4", "--out", str(whole)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = launch(KILL_ON_SECOND_SAVE, ["--batch-size", "4", "--out", str(broken)], tmp_path)
    assert killed.returncode != 0
    early = load_checkpoint(broken)  # the torn second write left the first intact
    assert early["step"] == 4

    # world size 1, batch 8: the batches of two ranks with 4 each, from the gathered checkpoint
    alone = launch(PLAIN, ["--batch-size", "8", "--out", str(single), "--resume",
                           str(broken / "ckpt.pt")], tmp_path, processes=1)
    assert alone.returncode == 0, alone.stderr[-3000:]

    resumed = launch(PLAIN, ["--batch-size", "4", "--out", str(broken), "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    assert trajectory(broken) == trajectory(whole)
    assert len([r for r in trajectory(whole) if "loss" in r]) == 12
    a, b = (torch.load(d / "ckpt.pt", weights_only=True) for d in (whole, broken))
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert len(b["rng"]) == 2

    # one process sums the 8 per-sample gradients in another order than two ranks' halves:
    # equal up to float32 rounding (as tests/test_ddp.py)
    keys = {"loss", "val_loss", "train_loss"}
    got = [r for r in trajectory(single, keys) if r["iter"] >= 4]
    want = [r for r in trajectory(whole, keys) if r["iter"] >= 4]
    assert [r["iter"] for r in got] == [r["iter"] for r in want] and len(got) == 10
    for key in keys:
        assert [r.get(key) for r in got] == pytest.approx([r.get(key) for r in want], abs=1e-5)
    c = torch.load(single / "ckpt.pt", weights_only=True)
    assert c["step"] == 12 and len(c["rng"]) == 1
    assert all(torch.allclose(c["model"][k], a["model"][k], atol=1e-5) for k in a["model"])

    # the Riemannian mixers' H_res: whole on both ranks, bit for bit, and moved by training
    ranks = [torch.load(tmp_path / f"whole.rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert len(ranks[0]) == 4 and ranks[0].keys() == ranks[1].keys()  # 2 layers x 2 sublayers
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name])
        assert torch.equal(value, a["model"][name])
        assert not torch.equal(value, early["model"][name])


def test_parallel_mode_is_checked_and_one_process_trains_the_whole_model():
    with pytest.raises(ValueError, match="TrainConfig.parallel"):
        TrainConfig(parallel="zero3")
    assert Distributed().parallel_mode("fsdp") == "none"  # a checkpoint of any mode resumes
    assert Distributed(world_size=2).parallel_mode("fsdp") == "fsdp"
    with pytest.raises(ValueError, match="parallel='none' trains in one process"):
        Distributed(world_size=2).parallel_mode("none")


def test_fsdp_refuses_recompute_by_name():
    model = GPT(GPTConfig(vocab_size=8, n_layer=1, n_head=1, n_embd=8, block_size=4,
                          mixer="mhc", recompute=True))
    with pytest.raises(ValueError, match="parallel='fsdp' does not support GPTConfig.recompute"):
        ShardedGPT(model, torch.device("cpu"))
