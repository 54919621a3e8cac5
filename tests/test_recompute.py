"""Recompute of the stream mixing (mHC, arXiv 2512.24880, Sec. 4.3): the gradients are those
without recompute bit for bit, and the activation memory kept for the backward shrinks to the
residual model's plus one stream per group."""

import math
import os
import subprocess
import sys

import pytest
import torch
from training_scripts import KILL_ON_SECOND_SAVE, PLAIN

from mhckit.functional import optimal_group_size, recompute_streams, stream_mix, stream_write
from mhckit.functional.stream_mix import stream_write_
from mhckit.models import GPT, GPTConfig, load_checkpoint, read_metrics
from mhckit.models.memory import live_activation_bytes
from mhckit.nn import HyperConnection

SMALL = dict(n_layer=3, n_head=2, n_embd=16, block_size=8)  # 6 sublayers


def gpt_gradients(mixer, recompute, dtype=torch.float64, recompute_maps=False, **options):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SMALL, mixer=mixer, recompute=recompute,
                          recompute_maps=recompute_maps, mixer_options=options))
    model.to(dtype)
    g = torch.Generator().manual_seed(1)
    idx, targets = (torch.randint(65, (2, 8), generator=g) for _ in range(2))
    loss = model(idx, targets)[1]
    loss.backward()
    return loss.detach(), {k: p.grad for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mixer, options", [("mhc", {}), ("hc", {}), ("kromhc", {}),
                                            ("go-mhc", {}), ("jpmhc", {"riemannian": True})])
@pytest.mark.parametrize("recompute", [True, 1, 4, 6])  # 4 does not divide 6 sublayers
@pytest.mark.parametrize("maps", [False, True], ids=["streams", "maps"])
def test_recompute_gradients_equal_the_stored_ones_bit_for_bit(mixer, options, recompute, maps):
    loss, grads = gpt_gradients(mixer, False, **options)
    loss_r, grads_r = gpt_gradients(mixer, recompute, recompute_maps=maps, **options)
    assert torch.equal(loss, loss_r)
    assert grads.keys() == grads_r.keys()
    for name, grad in grads.items():
        assert torch.equal(grad, grads_r[name]), name


def test_recompute_gradients_equal_in_float32_too():
    loss, grads = gpt_gradients("mhc", False, torch.float32)
    loss_r, grads_r = gpt_gradients("mhc", 2, torch.float32)
    assert torch.equal(loss, loss_r) and all(torch.equal(grads[k], grads_r[k]) for k in grads)


def test_a_block_alone_recomputes_with_the_same_input_and_parameter_gradients():
    C, n = 8, 4
    branch = torch.nn.Sequential(torch.nn.LayerNorm(C), torch.nn.Linear(C, C)).double()
    plain = HyperConnection(C, n, "mhc", branch=branch).double()
    again = HyperConnection(C, n, "mhc", branch=branch, recompute=True).double()
    again.load_state_dict(plain.state_dict())
    x = torch.randn(3, n, C, dtype=torch.float64, requires_grad=True)
    results = []
    for block in (plain, again):
        out = block(x)
        results.append(torch.autograd.grad(out.square().sum(), [x, *block.parameters()]))
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def generic_stages(C, n, count):
    """Stages that are not HyperConnections: coefficients from a linear map of the streams
    (softmax read, free H_res, tanh write), branches that save their input (LayerNorm), one
    that does not (sin) and the identity."""
    torch.manual_seed(3)
    project = torch.nn.Linear(n * C, n * n + 2 * n).double()
    branches = [torch.nn.Sequential(torch.nn.LayerNorm(C), torch.nn.Linear(C, C)).double(),
                torch.sin, lambda h: h]

    def coefficients(x):
        z = project(x.flatten(-2))
        pre, res, post = z.split((n, n * n, n), dim=-1)
        return pre.softmax(-1), res.unflatten(-1, (n, n)), torch.tanh(post)

    params = [*project.parameters(), *branches[0].parameters()]
    return [(coefficients, branches[k % 3]) for k in range(count)], params


def plain_loop(x, stages):
    """The stages without recompute: ``x <- H_res·x + H_postᵀ·F(H_pre·x)`` in turn."""
    for coefficients, branch in stages:
        h_pre, h_res, h_post = coefficients(x)
        h, mixed = stream_mix(x, h_pre, h_res)
        x = stream_write(mixed, h_post, branch(h))
    return x


@pytest.mark.parametrize("maps", [False, True])
@pytest.mark.parametrize("group", [1, 2, 5])
def test_generic_stages_give_the_plain_loops_gradients_bit_for_bit(maps, group):
    C, n = 6, 3
    stages, params = generic_stages(C, n, 5)
    x = torch.randn(2, 4, n, C, dtype=torch.float64, requires_grad=True)
    plain = plain_loop(x, stages)
    want = torch.autograd.grad(plain.square().sum(), [x, *params])
    out = recompute_streams(x, stages, group, maps=maps)
    got = torch.autograd.grad(out.square().sum(), [x, *params], retain_graph=True)
    assert torch.equal(out, plain)
    assert all(torch.equal(a, b) for a, b in zip(want, got, strict=True))
    # a second backward through the retained graph rebuilds the streams again
    again = torch.autograd.grad(out.square().sum(), [x, *params])
    assert all(torch.equal(a, b) for a, b in zip(want, again, strict=True))


@pytest.mark.parametrize("maps", [False, True], ids=["streams", "maps"])
def test_each_group_is_rebuilt_once_per_backward(monkeypatch, maps):
    """The rebuild runs once per group, whatever order the backward asks for the streams in
    (with ``maps`` the checkpoint's rerun of the coefficients is one more user of each)."""
    from mhckit.functional import stream_recompute

    calls = []
    rebuild = stream_recompute._Tape._rebuild
    monkeypatch.setattr(stream_recompute._Tape, "_rebuild",
                        lambda tape, wanted: calls.append(wanted) or rebuild(tape, wanted))
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SMALL, mixer="mhc", recompute=2, recompute_maps=maps))
    idx = torch.randint(65, (2, 8))
    model(idx, idx)[1].backward()
    assert len(calls) == 3  # 6 sublayers in groups of 2


def test_double_backward_through_a_rebuilt_stream_raises():
    stages, _ = generic_stages(6, 3, 2)
    x = torch.randn(4, 3, 6, dtype=torch.float64, requires_grad=True)
    out = recompute_streams(x, stages, 2)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(out.square().sum(), x, create_graph=True)


def test_without_grad_mode_it_is_the_plain_loop():
    stages, _ = generic_stages(6, 3, 3)
    x = torch.randn(4, 3, 6, dtype=torch.float64)
    with torch.no_grad():
        out = recompute_streams(x, stages, 2)
    plain = plain_loop(x, stages)
    assert torch.equal(out, plain)


@pytest.mark.parametrize("stages, error", [
    ([(torch.sin,)], TypeError), ([(torch.sin, "branch")], TypeError), (torch.sin, TypeError)])
def test_bad_stages_raise_naming_them(stages, error):
    x = torch.randn(2, 3, 4, requires_grad=True)
    with pytest.raises(error, match="stages"):
        recompute_streams(x, stages, 1)


def test_stream_write_in_place_gives_the_same_values():
    mixed, post, out = torch.randn(5, 4, 7), torch.rand(5, 4), torch.randn(5, 7)
    want = stream_write(mixed, post, out)
    got = stream_write_(mixed, post, out)
    assert got is mixed and torch.equal(got, want)


def test_optimal_group_size_is_the_papers_square_root_rounded_up():
    assert optimal_group_size(4, 8) == math.ceil(math.sqrt(4 * 8 / 6)) == 3
    assert optimal_group_size(4, 60) == math.ceil(math.sqrt(4 * 60 / 6))  # 27B model: 7
    assert optimal_group_size(4, 1) == 1
    assert GPTConfig(mixer="mhc", recompute=True).recompute_group == 3  # 2·4 sublayers
    assert GPTConfig(mixer="residual", recompute=True).recompute_group == 0


@pytest.mark.parametrize("value", [0, -1, 1.5, "yes"])
def test_bad_recompute_raises_naming_it(value):
    with pytest.raises(ValueError, match="recompute"):
        GPTConfig(mixer="mhc", recompute=value)
    with pytest.raises(ValueError, match="recompute"):
        HyperConnection(8, 4, "mhc", recompute=value)


def test_recompute_maps_needs_recompute_and_a_bool():
    for make in (lambda **k: GPTConfig(mixer="mhc", **k),
                 lambda **k: HyperConnection(8, 4, "mhc", **k)):
        with pytest.raises(ValueError, match="recompute_maps=True needs recompute"):
            make(recompute_maps=True)
        with pytest.raises(TypeError, match="recompute_maps"):
            make(recompute=True, recompute_maps=1)


def test_live_activation_bytes_counts_what_autograd_keeps():
    x = torch.randn(1000, requires_grad=True)
    _, kept = live_activation_bytes(lambda: x.exp().sum(), keep=lambda r: r)
    assert kept == 1000 * 4 + 4  # exp keeps its output; the scalar sum
    _, freed = live_activation_bytes(lambda: (x * 2).sum(), keep=lambda r: r)
    assert freed == 4  # mul by a number keeps nothing; the temporary is freed


def activation_bytes(mixer, recompute, maps=False):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=32, mixer=mixer,
                          recompute=recompute, recompute_maps=maps))
    idx = torch.randint(65, (4, 32))
    loss, kept = live_activation_bytes(lambda: model(idx, idx), keep=lambda r: r[1])
    loss.backward()
    return kept


@pytest.mark.parametrize("mixer", ["mhc", "go-mhc", "hc"])
def test_recompute_keeps_the_residual_models_activations_plus_one_stream_per_group(mixer):
    """Per group its input stream (the first: the embedding, expanded without a copy); per
    sublayer ``F(h)`` replaces the branch input the residual model keeps; what the
    coefficient side keeps does not depend on the grouping: the coefficient maps' saved
    tensors, or with ``recompute_maps`` only the coefficients (``2n + n²`` per token)."""
    residual = activation_bytes("residual", False)
    tokens, sublayers, n, C = 4 * 32, 4, 4, 64
    stream, embedding = tokens * n * C * 4, tokens * C * 4  # (B, T, n, C), (B, T, C) float32
    coefficients = sublayers * tokens * (2 * n + n * n) * 4
    for maps in (False, True):
        rest = {group: activation_bytes(mixer, group, maps) - residual
                - (math.ceil(sublayers / group) - 1) * stream for group in (1, 2, 4)}
        assert len(set(rest.values())) == 1, rest  # the groups differ by streams only
        if maps:
            # and per sublayer a few constants (index tensors, go-mHC's 8 x 8 base)
            assert 0 <= rest[1] - embedding - coefficients <= 512 * sublayers, rest
        else:  # the maps keep more than their outputs, less than a stream per sublayer
            assert embedding + coefficients < rest[1] < sublayers * stream, rest
    assert activation_bytes(mixer, False) > residual + 3 * stream  # every sublayer's stream


def run_training(args, code=PLAIN):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, "train", *args], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("first", [["--recompute"], []], ids=["recompute", "switched-on"])
def test_recompute_trains_and_resumes_after_sigkill_on_the_stored_trajectory(tmp_path, first):
    """Killed with or without recompute, resumed with it (and ``--recompute-maps``): the run
    of the stored trajectory (``recompute``, ``recompute_maps`` are execution fields, not
    part of the run's identity)."""
    args = ["--mixer", "mhc", "--n-layer", "2", "--n-head", "2", "--n-embd", "16",
            "--block-size", "16", "--batch-size", "4", "--eval-iters", "2", "--max-iters",
            "8", "--eval-interval", "4", "--checkpoint-interval", "3", "--lr-decay-iters",
            "30", "--warmup-iters", "2", "--sample-tokens", "0", "--no-progress"]
    stored, broken = tmp_path / "stored", tmp_path / "broken"
    assert run_training([*args, "--out", str(stored)]).returncode == 0
    killed = run_training([*args, *first, "--out", str(broken)], code=KILL_ON_SECOND_SAVE)
    assert killed.returncode == -9, killed.stderr
    assert load_checkpoint(broken)["config"]["model"]["recompute"] is bool(first)
    # resumed rerunning the coefficient maps too: another execution, the same trajectory
    resumed = run_training([*args, "--recompute", "--recompute-maps", "--out", str(broken),
                            "--resume"])
    assert resumed.returncode == 0, resumed.stderr

    def trajectory(run):  # every logged number but wall-clock ones and the run's identity
        return [{k: v for k, v in r.items() if k not in ("ms", "tokens_per_s", "run")}
                for r in read_metrics(run / "metrics.jsonl")]

    assert trajectory(broken) == trajectory(stored)
    a, b = (torch.load(d / "ckpt.pt", weights_only=True)["model"] for d in (stored, broken))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_process_ddp_with_recompute_follows_one_process_without(tmp_path):
    flags = ["--mixer", "mhc", "--n-layer", "2", "--n-head", "2", "--n-embd", "16",
             "--block-size", "16", "--max-iters", "6", "--eval-interval", "3", "--eval-iters",
             "2", "--sample-tokens", "0", "--no-progress"]
    ddp = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for launcher, name, extra in ((ddp, "ddp", ["--recompute", "--batch-size", "4"]),
                                  ([], "single", ["--batch-size", "8"])):
        done = subprocess.run([sys.executable, *launcher, "-m", "mhckit", "train", *flags,
                               *extra, "--out", str(tmp_path / name)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    got, want = ([r["loss"] for r in read_metrics(tmp_path / name / "metrics.jsonl")
                  if "loss" in r] for name in ("ddp", "single"))
    assert len(got) == len(want) == 6
    assert got == pytest.approx(want, abs=1e-5)  # as tests/test_ddp.py: the all-reduce order


@pytest.mark.slow
@pytest.mark.parametrize("maps", [False, True], ids=["streams", "maps"])
def test_recompute_under_torch_compile_gives_the_eager_gradients(maps):
    # each group is one graph break (its saved-tensor hooks), which dynamo runs eagerly:
    # correct, and the same memory
    def gradients(compile_):
        torch.manual_seed(0)
        model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, mixer="mhc",
                              recompute=compile_ or False,
                              recompute_maps=bool(compile_) and maps))
        run = torch.compile(model) if compile_ else model
        idx = torch.randint(65, (2, 8), generator=torch.Generator().manual_seed(1))
        run(idx, idx)[1].backward()
        return [p.grad for p in model.parameters() if p.grad is not None]

    for a, b in zip(gradients(False), gradients(2), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
