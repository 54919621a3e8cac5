"""Checkpoints lose nothing, are written atomically, and fail with a clear CheckpointError:
every tensor's bytes are verified on load, and a state with NaN or inf is never written."""

import os
import random

import pytest
import torch

from mhckit.models import (
    GPT,
    BatchSampler,
    CheckpointError,
    GPTConfig,
    TrainConfig,
    build_optimizer,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from mhckit.models.checkpoint import (
    VERSION,
    check_model_config,
    restore,
    rng_state,
    set_rng_state,
)
from mhckit.models.config import config_to_dict
from mhckit.models.run_directory import run_identity

CONFIG = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=5, mixer="go-mhc",
                   n_streams=4, mixer_options={"riemannian": True})
ALPHABET = "abcde"


def state(seed=0):
    torch.manual_seed(seed)
    model = GPT(CONFIG)
    optimizer = build_optimizer(model, learning_rate=1e-2, weight_decay=0.1, betas=(0.9, 0.99))
    sampler = BatchSampler(torch.arange(100) % 5, 8, 3, seed=seed)
    return model, optimizer, sampler


def step(model, optimizer, sampler):
    x, y = sampler.sample()
    loss = model(x, y)[1]
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def save(path, model, optimizer, sampler, step_count=1):
    return save_checkpoint(path, step=step_count, model=model, optimizer=optimizer,
                           sampler=sampler, rng=[rng_state()], model_config=CONFIG,
                           train_config=TrainConfig(),
                           tokenizer={"kind": "char", "alphabet": ALPHABET},
                           identity=run_identity(config_to_dict(CONFIG), 0, "sha256:test"))


def test_checkpoint_holds_riemannian_optimizer_state():
    model, optimizer, _ = state()
    assert set(optimizer.optimizers) == {"adamw", "riemannian"}


def test_resuming_from_a_checkpoint_continues_bit_identically(tmp_path):
    model, optimizer, sampler = state()
    step(model, optimizer, sampler)
    save(tmp_path / "ckpt.pt", model, optimizer, sampler)
    random.random()
    expected = [step(model, optimizer, sampler) for _ in range(3)]
    expected_rand = (torch.rand(3), random.random())

    model2, optimizer2, sampler2 = state(seed=1)  # different init, data order and RNGs
    ckpt = load_checkpoint(tmp_path)  # a run directory works as well as the file
    for target, key in ((model2, "model"), (optimizer2, "optimizer"), (sampler2, "sampler")):
        restore(tmp_path, target, ckpt[key], key)
    set_rng_state(ckpt["rng"][0])
    random.random()
    assert [step(model2, optimizer2, sampler2) for _ in range(3)] == expected
    got_rand = (torch.rand(3), random.random())
    assert torch.equal(got_rand[0], expected_rand[0]) and got_rand[1] == expected_rand[1]
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_stores_config_and_vocabulary_as_plain_values(tmp_path):
    model, optimizer, sampler = state()
    save(tmp_path / "ckpt.pt", model, optimizer, sampler, step_count=7)
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert ckpt["step"] == 7 and ckpt["tokenizer"]["alphabet"] == ALPHABET
    assert ckpt["config"]["model"]["mixer"] == "go-mhc"
    assert ckpt["config"]["train"]["max_iters"] == TrainConfig().max_iters
    loaded, tokenizer, _ = load_model(tmp_path / "ckpt.pt")
    assert tokenizer.alphabet == ALPHABET and not loaded.training
    idx = torch.tensor([[0, 1, 2]])
    torch.testing.assert_close(loaded(idx)[0], model.eval()(idx)[0], rtol=0, atol=0)


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer, sampler = state()
    path = save(tmp_path / "ckpt.pt", model, optimizer, sampler, step_count=1)
    before = path.read_bytes()

    def torn_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save(path, model, optimizer, sampler, step_count=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_stale_temporary_files_are_removed_by_the_next_save(tmp_path):
    model, optimizer, sampler = state()
    (tmp_path / ".ckpt.pt.123.abcd.tmp").write_bytes(b"torn")
    save(tmp_path / "ckpt.pt", model, optimizer, sampler)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


@pytest.mark.parametrize("damage, problem", [
    (lambda b: b[: len(b) // 2], "unreadable"),
    (lambda b: b"not a checkpoint at all", "unreadable"),
    (lambda b: b"", "unreadable"),
])
def test_corrupt_checkpoint_raises_checkpoint_error_naming_the_file(tmp_path, damage, problem):
    model, optimizer, sampler = state()
    path = save(tmp_path / "ckpt.pt", model, optimizer, sampler)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=problem) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("content, problem", [
    ({"weights": torch.zeros(2)}, "not a mhckit GPT checkpoint"),
    ({"format": "mhckit-gpt-checkpoint", "version": 99}, "version 99"),
    ({"format": "mhckit-gpt-checkpoint", "version": VERSION, "step": "7"},
     "'step' must be a int"),
])
def test_foreign_checkpoint_raises_checkpoint_error(tmp_path, content, problem):
    torch.save(content, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=problem):
        load_checkpoint(tmp_path / "x.pt")


def test_missing_checkpoint_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_mismatched_model_config_names_the_differing_fields(tmp_path):
    other = GPTConfig(**{**CONFIG.__dict__, "n_embd": 32, "mixer": "mhc"})
    with pytest.raises(CheckpointError, match="n_embd: checkpoint 16, given 32") as info:
        check_model_config(tmp_path / "ckpt.pt", CONFIG, other)
    assert "mixer: checkpoint 'go-mhc', given 'mhc'" in str(info.value)


def test_state_that_does_not_fit_raises_checkpoint_error(tmp_path):
    model, optimizer, sampler = state()
    save(tmp_path / "ckpt.pt", model, optimizer, sampler)
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    bigger = GPT(GPTConfig(**{**CONFIG.__dict__, "n_embd": 32}))
    with pytest.raises(CheckpointError, match="model state does not fit"):
        restore(tmp_path / "ckpt.pt", bigger, ckpt["model"], "model")


# -- integrity: digests verified on load, finite state checked before the write --------------
def saved_after_one_step(tmp_path):
    model, optimizer, sampler = state()
    step(model, optimizer, sampler)  # Adam moments exist
    return save(tmp_path / "ckpt.pt", model, optimizer, sampler), model, optimizer, sampler


@pytest.mark.parametrize("name", [
    "model/transformer.h.0.attn.branch.layer.c_attn.weight",
    "optimizer/adamw/state/1/exp_avg_sq",
])
def test_a_flipped_byte_in_tensor_data_is_a_checkpoint_error_naming_the_tensor(tmp_path, name):
    path, *_ = saved_after_one_step(tmp_path)
    ckpt = torch.load(path, weights_only=True)
    section, *keys = name.split("/")
    tensor = ckpt[section]
    for key in (keys if section == "optimizer" else ["/".join(keys)]):
        tensor = tensor[int(key) if key.isdigit() else key]
    data, raw = bytearray(path.read_bytes()), tensor.numpy().tobytes()
    where = data.find(raw)
    assert where >= 0 and data.find(raw, where + 1) < 0  # stored once, uncompressed
    data[where + len(raw) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"corrupt: tensor {name} does not match") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


class RunsCode:
    """Unpickling this calls ``os.getcwd`` (harmless, but code all the same)."""

    def __reduce__(self):
        return os.getcwd, ()


def test_a_pickle_that_would_run_code_is_refused_saying_so(tmp_path):
    torch.save({"format": "mhckit-gpt-checkpoint", "payload": RunsCode()}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="refused: loading it would run code") as info:
        load_checkpoint(tmp_path / "x.pt")
    message = str(info.value)
    assert "getcwd" in message and "\x1b" not in message and "\n" not in message


@pytest.mark.parametrize("where", ["model", "optimizer"])
def test_a_state_holding_nan_or_inf_is_never_written(tmp_path, where):
    path, model, optimizer, sampler = saved_after_one_step(tmp_path)
    before = path.read_bytes()
    with torch.no_grad():
        if where == "model":
            model.transformer.wpe.weight[0, 0] = float("nan")
        else:
            optimizer.optimizers["adamw"].state[model.transformer.wpe.weight][
                "exp_avg"][0, 0] = float("inf")
    with pytest.raises(CheckpointError, match=f"not written: {where}/.* holds NaN or inf"):
        save(path, model, optimizer, sampler, step_count=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
