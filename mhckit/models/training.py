"""The training loop: nanoGPT's ``train.py`` as a function, with exact resume.

``train(model_config, train_config, out_dir)`` writes into ``out_dir``:

* ``metrics.jsonl`` -- one JSON object per line: ``{"iter", "loss", "lr", "ms",
  "tokens_per_s"}`` for a training iteration (the loss *before* its update),
  ``{"iter", "train_loss", "val_loss"}`` for an evaluation after ``iter`` iterations,
  ``{"iter", "sample"}`` for generated text; ``{"iter", "diagnostics"}`` for the mixers'
  composite gain, identity distance, constraint error and spread over tokens at every
  evaluation (:func:`mixer_diagnostics`);
* ``samples.txt`` -- the generated samples, ``loss.png`` -- the loss curves;
* ``ckpt.pt`` -- the latest checkpoint (:mod:`mhckit.models.checkpoint`).

The first record, ``{"iter", "run"}``, is the run's identity
(:func:`~mhckit.models.run_directory.run_identity`); every line is strict JSON (a non-finite
number is ``null``). The directory belongs to one run (:mod:`mhckit.models.run_directory`):
it is locked while training, another run's files are not overwritten unless asked, and
resume refuses a checkpoint of another run. A non-finite loss or gradient norm stops the run
or skips the step (:mod:`mhckit.models.nonfinite`); under ``"skip"`` the training records
carry ``"skipped_steps"``, the count so far, and a skipped step's record ``"skipped": true``.

Resuming from a checkpoint taken after ``k`` iterations drops the metrics of iterations
``>= k`` (a killed run may have logged past its last checkpoint) and continues with the same
model, optimizer, sampler and RNG states, so the losses that follow are bit-identical to an
uninterrupted run on the same machine and thread count. Evaluation and sampling draw from
their own generators, never from the training ones.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import statistics
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mhckit.functional.value_checks import value_checks
from mhckit.models.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    check_model_config,
    checkpoint_path,
    load_checkpoint,
    restore,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from mhckit.models.config import TrainConfig, config_to_dict
from mhckit.models.data import BatchSampler, TextData
from mhckit.models.distributed import Distributed
from mhckit.models.fsdp import ShardedGPT
from mhckit.models.gpt import GPT, GPTConfig
from mhckit.models.logging_backends import MetricsBackend, open_backends
from mhckit.models.nonfinite import NonFiniteError, NonFiniteGuard
from mhckit.models.optimizers import build_optimizer, learning_rate_at
from mhckit.models.plotting import plot_loss_curves
from mhckit.models.run_directory import (
    RunDirectoryError,
    claim_run_directory,
    data_fingerprint,
    identity_differences,
    run_identity,
)
from mhckit.nn.token_diagnostics import token_diagnostics

__all__ = ["TrainResult", "train", "read_metrics", "METRICS_NAME", "SAMPLES_NAME", "PLOT_NAME"]

METRICS_NAME, SAMPLES_NAME, PLOT_NAME = "metrics.jsonl", "samples.txt", "loss.png"
RUN_FILES = (CHECKPOINT_NAME, METRICS_NAME, SAMPLES_NAME, PLOT_NAME)  # what --overwrite removes
EVAL_SEED_OFFSET = 1  # evaluation batches: the same every evaluation, apart from training's


@dataclass
class TrainResult:
    out_dir: Path
    iters: int  # iterations completed
    val_loss: float  # at the final evaluation
    train_loss: float
    step_time: float  # median seconds per training iteration in this process
    model: GPT  # the trained model, unwrapped (not compiled, not DDP; sharded under FSDP)
    metrics: list[dict[str, Any]]
    rank: int = 0  # this process's data-parallel rank (0 writes the files)
    up_to_date: bool = False  # resumed at or past max_iters: nothing trained, nothing written


def read_metrics(path: str | Path, *, before: int | None = None) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (those with ``iter < before`` if given). A torn
    last line, from a process killed while writing it, is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if before is None or record["iter"] < before:
            records.append(record)
    return records


def autocast(device: torch.device, dtype: str) -> AbstractContextManager:
    """bfloat16 autocast where asked for (``"auto"``: on a GPU that supports it)."""
    bf16 = dtype == "bfloat16" or (dtype == "auto" and device.type == "cuda"
                                   and torch.cuda.is_bf16_supported())
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


@torch.no_grad()
def estimate_loss(model: GPT, data: TextData, tc: TrainConfig, env: Distributed,
                  device: torch.device) -> dict[str, float]:
    """Mean loss over ``eval_iters`` batches of each split (the same batches every call)."""
    model.eval()
    out = {}
    for split in ("train", "val"):
        sampler = BatchSampler(data.split(split), model.config.block_size, tc.batch_size,
                               seed=tc.seed + EVAL_SEED_OFFSET, rank=env.rank,
                               world_size=env.world_size)
        losses = []
        for _ in range(tc.eval_iters):
            x, y = sampler.sample(device)
            with autocast(device, tc.dtype):
                losses.append(float(model(x, y)[1]))
        out[split] = env.mean(sum(losses) / len(losses), device)
    model.train()
    return out


@torch.no_grad()
def mixer_diagnostics(model: GPT, data: TextData, tc: TrainConfig,
                      device: torch.device) -> dict[str, Any]:
    """:func:`mhckit.nn.token_diagnostics` of the mixers on the first validation batch of
    :func:`estimate_loss` (the same tokens at every evaluation): one forward pass, no cost in
    the training step."""
    sampler = BatchSampler(data.split("val"), model.config.block_size, tc.batch_size,
                           seed=tc.seed + EVAL_SEED_OFFSET)
    x, _ = sampler.sample(device)
    model.eval()
    with autocast(device, tc.dtype):
        record = token_diagnostics(model, x).as_record()
    model.train()
    return record


def generate_sample(model: GPT, data: TextData, tc: TrainConfig, device: torch.device) -> str:
    tokenizer = data.tokenizer
    try:
        start = tokenizer.encode("\n")
    except ValueError:  # a character vocabulary without a newline
        start = [0]
    generator = torch.Generator(device=device).manual_seed(tc.seed)
    idx = torch.tensor([start], dtype=torch.long, device=device)
    model.eval()
    with autocast(device, tc.dtype):
        out = model.generate(idx, tc.sample_tokens, generator=generator)
    model.train()
    return tokenizer.decode(out[0, len(start):].tolist())


def _strict(value: Any) -> Any:
    """``value`` with every non-finite float (nested too) replaced by ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _json_line(record: dict[str, Any]) -> str:
    """One strict JSON line (``null`` for NaN and inf, which JSON does not have)."""
    return json.dumps(_strict(record), allow_nan=False) + "\n"


class _Log:
    """Rank 0's metrics file and the files derived from it."""

    def __init__(self, out_dir: Path, records: list[dict[str, Any]], label: str,
                 active: bool, title: str, backends: list[MetricsBackend]) -> None:
        self.out_dir, self.records, self.label, self.active = out_dir, records, label, active
        self.title, self.backends = title, backends
        if active:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / METRICS_NAME).write_text("".join(_json_line(r) for r in records))
            self.file = (out_dir / METRICS_NAME).open("a")

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.active:
            self.file.write(_json_line(record))
            self.file.flush()
            for backend in self.backends:
                backend.write(record)

    def render(self) -> None:
        if not self.active:
            return
        samples = [f"--- iter {r['iter']} ---\n{r['sample']}\n" for r in self.records
                   if "sample" in r]
        (self.out_dir / SAMPLES_NAME).write_text("\n".join(samples))
        plot_loss_curves({self.label: self.records}, self.out_dir / PLOT_NAME, title=self.title)

    def close(self) -> None:
        if self.active:
            self.file.close()
            for backend in self.backends:
                backend.close()


def train(model_config: GPTConfig, train_config: TrainConfig, out_dir: str | Path, *,
          resume: str | Path | None = None, progress: bool = True,
          overwrite: bool = False) -> TrainResult:
    """Train a :class:`GPT` on ``train_config.dataset``; ``resume`` is a checkpoint (or a run
    directory holding ``ckpt.pt``) of the same run: its model configuration must equal
    ``model_config``, its seed and data fingerprint this run's, and ``out_dir``, if it holds
    a run, must hold that one. Without ``resume``, ``out_dir`` must not hold a run unless
    ``overwrite`` (which removes its files first).

    Raises :class:`~mhckit.models.run_directory.RunDirectoryError` (directory locked by
    another process, holding another run), :class:`CheckpointError` (a checkpoint that does
    not fit or is corrupt) and :class:`~mhckit.models.nonfinite.NonFiniteError` (the run
    diverged; nothing was written after the non-finite step). Resuming at or past
    ``max_iters`` trains and writes nothing and returns ``up_to_date=True``.

    Under ``torchrun`` every rank runs this function (DDP or FSDP, ``train_config.parallel``,
    see :mod:`mhckit.models.distributed`); rank 0 writes the files.
    """
    tc, out_dir = train_config, Path(out_dir)
    config_to_dict(model_config)  # a mixer the checkpoint cannot store is refused before training
    env, device = Distributed.from_environment(tc.device)
    try:
        with claim_run_directory(out_dir, run_files=RUN_FILES, resuming=resume is not None,
                                 overwrite=overwrite, active=env.is_main, agree=env.gather):
            return _train(model_config, tc, out_dir, resume, progress, env, device)
    finally:
        env.close()


def _train(mc: GPTConfig, tc: TrainConfig, out_dir: Path, resume: str | Path | None,
           progress: bool, env: Distributed, device: torch.device) -> TrainResult:
    torch.manual_seed(tc.seed + env.rank)
    random.seed(tc.seed + env.rank)
    data = TextData.load(tc.dataset)
    mc = dataclasses.replace(mc, vocab_size=data.tokenizer.vocab_size)
    identity = run_identity(config_to_dict(mc), tc.seed,
                            data_fingerprint({"train": data.train, "val": data.val}))
    mode = env.parallel_mode(tc.parallel)
    model = GPT(mc).to(device)
    sampler = BatchSampler(data.train, mc.block_size, tc.batch_size, seed=tc.seed,
                           rank=env.rank, world_size=env.world_size)
    start = 0
    if resume is not None:
        path = checkpoint_path(resume)
        state = load_checkpoint(path)
        if state["tokenizer"] != data.tokenizer.to_dict():
            raise CheckpointError(path, f"its tokenizer differs from dataset {tc.dataset!r}")
        check_model_config(path, state["model_config"], mc)
        differences = identity_differences(state["identity"], identity, ("checkpoint", "given"))
        if differences:
            raise CheckpointError(path, "another run: " + "; ".join(differences))
        restore(path, model, state["model"], "model")
        restore(path, sampler, state["sampler"], "sampler")
        if env.rank < len(state["rng"]):
            set_rng_state(state["rng"][env.rank])
        start = state["step"]
    # FSDP shards the whole model (loaded above), so a checkpoint of any world size fits
    sharded = ShardedGPT(model, device) if mode == "fsdp" else None
    optimizer = build_optimizer(model, learning_rate=tc.learning_rate,
                                weight_decay=tc.weight_decay, betas=(tc.beta1, tc.beta2))
    if resume is not None:
        restore(path, optimizer, sharded.shard_optimizer_state(optimizer, state["optimizer"])
                if sharded else state["optimizer"], "optimizer")

    train_model: torch.nn.Module = torch.compile(model) if tc.compile else model
    if mode == "ddp":
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)
    records = read_metrics(out_dir / METRICS_NAME) if resume is not None else []
    header = next((r["run"] for r in records if "run" in r), None)
    differences = identity_differences(header, identity, ("directory", "checkpoint")) \
        if header is not None else []
    if differences:
        raise RunDirectoryError(out_dir, f"holds another run than checkpoint {path}: "
                                         + "; ".join(differences))
    if resume is not None and start >= tc.max_iters:
        last = next((r for r in reversed(records) if "val_loss" in r), {})
        return TrainResult(out_dir, start, last.get("val_loss", math.nan),
                           last.get("train_loss", math.nan), math.nan, model, records,
                           env.rank, up_to_date=True)
    records = [r for r in records if r["iter"] < start]
    if header is None:
        records.insert(0, {"iter": start, "run": identity})
    guard = NonFiniteGuard(tc.on_nonfinite, tc.max_nonfinite_steps, env, device,
                           **(state["nonfinite"] if resume is not None else {}))
    backends = open_backends(out_dir, tensorboard=tc.tensorboard, wandb_project=tc.wandb,
                             start=start, config=dataclasses.asdict(tc)) if env.is_main else []
    log = _Log(out_dir, records, str(mc.mixer), env.is_main, data.title, backends)
    tokens_per_iter = tc.batch_size * mc.block_size * tc.gradient_accumulation_steps
    tokens_per_iter *= env.world_size
    bar = tqdm(total=tc.max_iters, initial=start, disable=not (progress and env.is_main),
               desc=str(mc.mixer), dynamic_ncols=True)

    def evaluate(it: int) -> dict[str, float]:
        guard.check()
        losses = estimate_loss(model, data, tc, env, device)
        if not all(math.isfinite(v) for v in losses.values()):
            raise NonFiniteError(it, f"evaluation: train loss {losses['train']}, val loss "
                                     f"{losses['val']}; stopped before sampling or writing")
        log.write({"iter": it, "train_loss": losses["train"], "val_loss": losses["val"]})
        whole = sharded.replica() if sharded else model  # rank 0's unsharded model
        if env.is_main:
            log.write({"iter": it, "diagnostics": mixer_diagnostics(whole, data, tc, device)})
        if tc.sample_tokens and env.is_main:
            log.write({"iter": it, "sample": generate_sample(whole, data, tc, device)})
        log.render()
        if env.is_main:
            bar.write(f"[{mc.mixer}] iter {it}: train loss {losses['train']:.4f}, "
                      f"val loss {losses['val']:.4f}")
        return losses

    step_times: list[float] = []
    try:
        for it in range(start, tc.max_iters):
            lr = learning_rate_at(it, learning_rate=tc.learning_rate, min_lr=tc.min_lr,
                                  warmup_iters=tc.warmup_iters,
                                  lr_decay_iters=tc.lr_decay_iters, decay_lr=tc.decay_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if it % tc.eval_interval == 0:
                evaluate(it)
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            try:
                for micro in range(tc.gradient_accumulation_steps):
                    x, y = sampler.sample(device)
                    if mode == "ddp":  # all-reduce gradients on the last micro-step only
                        last = micro == tc.gradient_accumulation_steps - 1
                        train_model.require_backward_grad_sync = last
                    # the sampler's token ids are in range by construction: no per-step
                    # value check (a host read on a GPU); the non-finite guard stays on
                    with autocast(device, tc.dtype), value_checks(False):
                        _, loss = train_model(x, y)
                    (loss / tc.gradient_accumulation_steps).backward()
                    loss_sum += loss.detach()
            except (ValueError, RuntimeError):
                guard.check()  # an earlier step went non-finite: report it, not its consequence
                raise
            # max_norm inf: the norm without clipping (the gradients are multiplied by 1)
            max_norm = tc.grad_clip if tc.grad_clip > 0 else math.inf
            if sharded is not None:
                sharded.average_replicated_gradients()
                grad_norm = sharded.clip_grad_norm_(max_norm)
            else:
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            guard.observe(it, loss_sum.double() / tc.gradient_accumulation_steps, grad_norm)
            reading = guard.read() if guard.skips else None  # "skip" decides before the update
            skipped = reading is not None and not reading.finite
            if not skipped:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if it % tc.log_interval == 0 or it == tc.max_iters - 1 or skipped:
                reading = reading or guard.read()
                dt = time.perf_counter() - t0
                record = {"iter": it, "loss": reading.loss, "lr": lr, "ms": 1000 * dt,
                          "tokens_per_s": tokens_per_iter / dt}
                if guard.skips:
                    record["skipped_steps"] = guard.skipped
                if skipped:
                    record["skipped"] = True
                    if env.is_main:
                        bar.write(f"[{mc.mixer}] iter {it}: update skipped (loss "
                                  f"{reading.loss}, gradient norm {reading.grad_norm})")
                log.write(record)
                bar.set_postfix(loss=f"{reading.loss:.4f}", tok_s=f"{tokens_per_iter / dt:,.0f}")
            step_times.append(time.perf_counter() - t0)
            bar.update(1)
            if (it + 1) % tc.checkpoint_interval == 0 or it + 1 == tc.max_iters:
                guard.check()
                rng = env.gather(rng_state())
                weights, moments = sharded.full_state(optimizer) if sharded else (model,
                                                                                   optimizer)
                env.on_main(functools.partial(
                    save_checkpoint, out_dir / CHECKPOINT_NAME, step=it + 1, model=weights,
                    optimizer=moments, sampler=sampler, rng=rng, model_config=mc, train_config=tc,
                    tokenizer=data.tokenizer.to_dict(), identity=identity,
                    nonfinite=guard.state_dict()))
        bar.close()
        final = evaluate(tc.max_iters)
    finally:
        bar.close()
        log.close()
    return TrainResult(out_dir=out_dir, iters=max(start, tc.max_iters), val_loss=final["val"],
                       train_loss=final["train"],
                       step_time=statistics.median(step_times) if step_times else float("nan"),
                       model=model, metrics=log.records, rank=env.rank)
