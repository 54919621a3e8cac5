"""Training: nanoGPT's schedule and optimizer groups, configuration parsing, the CLI, and
exact resume after a SIGKILL."""

import os
import subprocess
import sys

import geoopt
import pytest
import torch
from training_scripts import KILL_ON_SECOND_SAVE, PLAIN

from mhckit.cli import main
from mhckit.models import (
    GPT,
    NAMED_CONFIGS,
    CheckpointError,
    GPTConfig,
    TrainConfig,
    build_configs,
    build_optimizer,
    learning_rate_at,
    load_checkpoint,
    load_config,
    read_metrics,
    train,
)

TINY_FLAGS = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
              "--batch-size", "4", "--eval-iters", "2", "--warmup-iters", "5",
              "--lr-decay-iters", "30", "--sample-tokens", "20", "--no-progress"]


def losses(records):
    """The loss trajectory: every logged number except wall-clock ones."""
    return [{k: v for k, v in r.items() if k not in ("ms", "tokens_per_s")} for r in records]


# -- schedule and optimizer ----------------------------------------------------------------
def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    kw = dict(learning_rate=1e-3, min_lr=1e-4, warmup_iters=10, lr_decay_iters=110)
    assert learning_rate_at(0, **kw) == pytest.approx(1e-3 / 11)
    assert learning_rate_at(9, **kw) == pytest.approx(1e-3 * 10 / 11)
    assert learning_rate_at(10, **kw) == pytest.approx(1e-3)
    assert learning_rate_at(60, **kw) == pytest.approx(0.5 * (1e-3 + 1e-4))
    assert learning_rate_at(110, **kw) == pytest.approx(1e-4)
    assert learning_rate_at(500, **kw) == 1e-4
    assert learning_rate_at(500, **kw, decay_lr=False) == 1e-3
    lrs = [learning_rate_at(i, **kw) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_optimizer_decays_matrices_only_and_moves_manifold_parameters_riemannianly():
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=7, mixer="go-mhc",
                          mixer_options={"riemannian": True}))
    opt = build_optimizer(model, learning_rate=1e-3, weight_decay=0.1, betas=(0.9, 0.99))
    decay, no_decay = opt.optimizers["adamw"].param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert decayed == {"transformer.wte.weight", "transformer.wpe.weight"} | {
        f"transformer.h.0.{n}.weight" for n in (
            "attn.branch.layer.c_attn", "attn.branch.layer.c_proj", "mlp.branch.layer.c_fc",
            "mlp.branch.layer.c_proj")}
    assert not any("projection" in n or "bias" in n or ".ln." in n for n in decayed)
    riemannian = opt.optimizers["riemannian"].param_groups[0]["params"]
    assert riemannian and all(isinstance(p, geoopt.ManifoldParameter) for p in riemannian)
    assert len(opt.param_groups) == 3
    total = sum(len(g["params"]) for g in opt.param_groups)
    assert total == len(list(model.parameters()))


def test_manifold_parameters_stay_on_their_set_during_training():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=7, block_size=8,
                          mixer="jpmhc", mixer_options={"riemannian": True}))
    opt = build_optimizer(model, learning_rate=0.05, weight_decay=0.1, betas=(0.9, 0.99))
    start = [p.detach().clone() for p in opt.optimizers["riemannian"].param_groups[0]["params"]]
    for _ in range(5):
        idx = torch.randint(7, (4, 8))
        model(idx, idx)[1].backward()
        opt.step()
        opt.zero_grad()
    for p, p0 in zip(opt.optimizers["riemannian"].param_groups[0]["params"], start, strict=True):
        assert not torch.equal(p, p0)
        assert float(p.manifold.constraint_error(p.detach()).max()) < 1e-5


# -- configuration -------------------------------------------------------------------------
def test_toml_file_and_flags_build_the_dataclasses(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[model]\nmixer = "kromhc"\nn_layer = 3\n[model.mixer_options]\n'
                    'gate_init = 0.1\n[train]\nlearning_rate = 1\nmax_iters = 50\n')
    model, train = build_configs(load_config(path), {"train": {"max_iters": 7}})
    assert model.mixer == "kromhc" and model.n_layer == 3 and model.n_embd == 128
    assert model.mixer_options == {"gate_init": 0.1}
    assert train.learning_rate == 1.0 and isinstance(train.learning_rate, float)
    assert train.max_iters == 7


@pytest.mark.parametrize("text, error, match", [
    ("[model]\nn_layers = 3\n", ValueError, r"unknown GPTConfig fields \['n_layers'\]"),
    ("[train]\nmax_iters = '5'\n", TypeError, "TrainConfig.max_iters must be int"),
    ("[train]\ndecay_lr = 1\n", TypeError, "decay_lr must be bool"),
    ("[optim]\nlr = 1\n", ValueError, r"unknown sections \['optim'\]"),
    ("[model\n", ValueError, "not valid TOML"),
])
def test_bad_config_file_raises_naming_the_problem(tmp_path, text, error, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(error, match=match):
        build_configs(load_config(path))


def test_default_config_is_nanogpts_shakespeare_char_on_cpu():
    model, train = build_configs(load_config("shakespeare-char-cpu"))
    assert (model.n_layer, model.n_head, model.n_embd, model.block_size) == (4, 4, 128, 64)
    assert (model.dropout, model.bias) == (0.0, False)
    assert (train.batch_size, train.max_iters, train.lr_decay_iters, train.eval_iters) == (
        12, 2000, 2000, 20)
    assert (train.learning_rate, train.min_lr, train.beta2, train.warmup_iters) == (
        1e-3, 1e-4, 0.99, 100)
    assert set(NAMED_CONFIGS) >= {"demo", "shakespeare-char-cpu"}


def test_unknown_named_config_raises():
    with pytest.raises(ValueError, match="config must be one of"):
        load_config("no-such-config")


# -- command line --------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "sample", "compare"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: mhckit " + command in capsys.readouterr().out


def test_train_writes_metrics_plot_samples_and_checkpoint_then_sample_reads_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--mixer", "mhc", "--max-iters", "12", "--eval-interval", "6",
                 "--checkpoint-interval", "6", "--out", str(out), *TINY_FLAGS]) == 0
    assert "val loss" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"metrics.jsonl", "loss.png", "samples.txt",
                                               "ckpt.pt"}
    records = read_metrics(out / "metrics.jsonl")
    assert [r["iter"] for r in records if "loss" in r] == list(range(12))
    evals = [r for r in records if "val_loss" in r]
    assert [r["iter"] for r in evals] == [0, 6, 12]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    assert all(r["tokens_per_s"] > 0 for r in records if "loss" in r)
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "--- iter 12 ---" in (out / "samples.txt").read_text()
    assert load_checkpoint(out)["step"] == 12

    assert main(["sample", str(out), "--start", "ROMEO:", "--max-new-tokens", "30"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("ROMEO:") and len(text.rstrip("\n")) >= 36


def test_resume_with_a_different_model_is_a_clear_checkpoint_error(tmp_path, capsys):
    out = tmp_path / "run"
    main(["train", "--max-iters", "2", "--out", str(out), *TINY_FLAGS])
    assert main(["train", "--resume", "--n-embd", "32", "--out", str(out), *TINY_FLAGS[6:]]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {out / 'ckpt.pt'}" in err and "n_embd: checkpoint 16, given 32" in err
    with pytest.raises(CheckpointError, match="n_embd: checkpoint 16, given 32"):
        train(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=16),
              TrainConfig(max_iters=3), out, resume=out, progress=False)


@pytest.mark.parametrize("argv, message", [
    (["train", "--resume", "--out", "no/such/run"], "no such file"),
    (["train", "--config", "nope"], "config must be one of"),
    (["sample", "no/such/ckpt.pt"], "no such file"),
    (["compare", "--mixers", "residual,bogus"], "unknown presets ['bogus']"),
])
def test_command_line_errors_are_one_line_not_a_traceback(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mhckit {argv[0]}: error:") and message in err


def test_compare_prints_one_table_and_plots_all_curves(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--mixers", "residual,hc", "--max-iters", "4", "--eval-interval",
                 "4", "--checkpoint-interval", "4", "--out", str(out), *TINY_FLAGS]) == 0
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if line.startswith("mixer"))
    assert "val loss" in header and "x residual" in header and "constraint" in header
    rows = [line.split() for line in table.splitlines() if line.split()[:1] in (["residual"],
                                                                              ["hc"])]
    assert [r[0] for r in rows] == ["residual", "hc"] and rows[0][4] == "1.00"
    assert (out / "loss_curves.png").is_file() and (out / "hc" / "ckpt.pt").is_file()


# -- exact resume after SIGKILL -----------------------------------------------------------
def run_training(args, code=PLAIN):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, "train", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_resume_after_sigkill_reproduces_the_uninterrupted_loss_trajectory(tmp_path):
    args = ["--mixer", "go-mhc", "--mixer-options", '{"riemannian": true}', "--max-iters",
            "12", "--eval-interval", "6", "--checkpoint-interval", "4", *TINY_FLAGS,
            "--sample-tokens", "0"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert run_training([*args, "--out", str(whole)]).returncode == 0

    killed = run_training([*args, "--out", str(broken)], code=KILL_ON_SECOND_SAVE)
    assert killed.returncode == -9, killed.stderr
    assert load_checkpoint(broken)["step"] == 4  # the torn second write left the first intact
    assert max(r["iter"] for r in read_metrics(broken / "metrics.jsonl")) == 7

    resumed = run_training([*args, "--out", str(broken), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    expected = losses(read_metrics(whole / "metrics.jsonl"))
    assert losses(read_metrics(broken / "metrics.jsonl")) == expected
    assert len([r for r in expected if "loss" in r]) == 12
    assert not [p for p in broken.iterdir() if p.name.endswith(".tmp")]
    a, b = (torch.load(d / "ckpt.pt", weights_only=True)["model"] for d in (whole, broken))
    assert all(torch.equal(a[k], b[k]) for k in a)
