"""Checkpoints that lose nothing: model, optimizers (Riemannian state included), every RNG,
the data sampler's position, the step, the configuration and the tokenizer.

A checkpoint is written atomically (a temporary file in the same directory, ``fsync``,
``os.replace``, ``fsync`` of the directory), so a crash leaves the previous checkpoint or the
new one, never a torn file. It holds only tensors and plain Python values and is read with
``torch.load(weights_only=True)``: loading one never runs code, and a file whose pickle would
is refused as such. Whatever is wrong with a file -- truncated, not a checkpoint, another
format version, a model that does not fit -- raises :class:`CheckpointError` naming the path
and the problem.

Integrity (:mod:`mhckit.models.integrity`): the checkpoint stores the sha256 of every
tensor's bytes and of its plain values, verified on load, so a flipped byte in a weight or an
Adam moment is a :class:`CheckpointError` naming the tensor, not a silently different model.
A state holding NaN or inf is never written: :func:`save_checkpoint` checks every model and
optimizer tensor first and leaves the previous file as it was. The checkpoint also holds the
run's identity (:func:`mhckit.models.run_directory.run_identity`) and the counts of skipped
non-finite steps (:mod:`mhckit.models.nonfinite`).

The RNGs saved are torch's CPU generator, Python's ``random`` and, when present, every CUDA
device's generator; mhckit uses no NumPy randomness.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import secrets
from pathlib import Path
from typing import Any

import torch

from mhckit.models.config import config_to_dict, dataclass_from_dict
from mhckit.models.gpt import EXECUTION_FIELDS, GPT, GPTConfig
from mhckit.models.integrity import digest_mismatch, first_nonfinite, state_digests, to_cpu
from mhckit.models.tokenization import Tokenizer, tokenizer_from_dict

__all__ = ["CheckpointError", "FORMAT", "VERSION", "CHECKPOINT_NAME", "save_checkpoint",
           "load_checkpoint", "checkpoint_path", "rng_state", "set_rng_state",
           "check_model_config", "restore", "load_model"]

FORMAT = "mhckit-gpt-checkpoint"
VERSION = 2  # 2: digests, run identity and non-finite step counts
CHECKPOINT_NAME = "ckpt.pt"
REQUIRED = {"format": str, "version": int, "step": int, "model": dict, "optimizer": dict,
            "sampler": dict, "rng": list, "config": dict, "tokenizer": dict, "identity": dict,
            "nonfinite": dict, "digests": dict}
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
CODE_GLOBAL = re.compile(r"unsupported global:?\s+(?:GLOBAL\s+)?([\w.]+)", re.IGNORECASE)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path, self.problem = Path(path), problem
        super().__init__(f"checkpoint {path}: {problem}")


def _describe(err: BaseException) -> str:
    """The exception's type and the first line of its message (terminal escapes removed)."""
    lines = ANSI_ESCAPE.sub("", str(err)).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def checkpoint_path(path: str | os.PathLike) -> Path:
    """``path`` itself, or ``path/ckpt.pt`` when ``path`` is a run directory."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def rng_state() -> dict[str, Any]:
    """The state of every RNG mhckit draws from in this process."""
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, *, step: int, model: torch.nn.Module,
                    optimizer: Any, sampler: Any, rng: list[dict[str, Any]],
                    model_config: GPTConfig, train_config: Any, tokenizer: dict[str, Any],
                    identity: dict[str, Any], nonfinite: dict[str, int] | None = None) -> Path:
    """Write the training state atomically to ``path``; ``rng`` holds one
    :func:`rng_state` per data-parallel rank, ``tokenizer`` is the data's tokenizer
    (``Tokenizer.to_dict()``), ``identity`` the run's
    (:func:`~mhckit.models.run_directory.run_identity`), ``nonfinite`` the skipped-step
    counts of :class:`~mhckit.models.nonfinite.NonFiniteGuard`. Returns the path.

    Raises :class:`CheckpointError`, writing nothing, when a model or optimizer tensor holds
    NaN or inf; an ``OSError`` (a full disk) leaves the previous file intact and names it.
    """
    path = Path(path)
    state = to_cpu({
        "format": FORMAT, "version": VERSION, "step": step,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "sampler": sampler.state_dict(), "rng": rng,
        "config": {"model": config_to_dict(model_config), "train": config_to_dict(train_config)},
        "tokenizer": tokenizer, "identity": identity,
        "nonfinite": dict(nonfinite or {"skipped": 0, "in_a_row": 0}),
    })
    bad = first_nonfinite({"model": state["model"], "optimizer": state["optimizer"]})
    if bad is not None:
        raise CheckpointError(path, f"not written: {bad} holds NaN or inf (the file on disk is "
                                    f"unchanged)")
    state["digests"] = state_digests(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh name in the same directory (so os.replace is atomic), created with the usual
    # permissions (mkstemp would make it owner-only)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OSError(err.errno, f"{err.strerror or err}: checkpoint {path} not written, "
                                     f"the previous one is intact") from err
        raise
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint (on the CPU). Raises :class:`CheckpointError`."""
    path = checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = CODE_GLOBAL.search(ANSI_ESCAPE.sub("", str(err)))
        if found is None:
            raise CheckpointError(path, f"unreadable, not a complete torch file "
                                        f"({_describe(err)})") from err
        raise CheckpointError(path, f"refused: loading it would run code (its pickle calls "
                                    f"{found.group(1)}); a mhckit checkpoint holds only "
                                    f"tensors and plain values") from None
    except Exception as err:  # torch raises many types for a torn or foreign file
        raise CheckpointError(path, f"unreadable, not a complete torch file "
                                    f"({_describe(err)})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(path, f"not a mhckit GPT checkpoint (format {FORMAT!r} expected)")
    if state.get("version") != VERSION:
        raise CheckpointError(path, f"format version {state.get('version')!r}, this mhckit "
                                    f"reads version {VERSION} (version 1 files, written "
                                    f"without integrity digests, are not read)")
    for key, kind in REQUIRED.items():
        if not isinstance(state.get(key), kind):
            raise CheckpointError(path, f"entry {key!r} must be a {kind.__name__}, got "
                                        f"{type(state.get(key)).__name__}")
    digests = state.pop("digests")
    problem = digest_mismatch(state, digests)
    if problem is not None:
        raise CheckpointError(path, f"corrupt: {problem}")
    try:
        state["model_config"] = dataclass_from_dict(
            GPTConfig, state["config"]["model"], where=f"checkpoint {path}")
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(path, f"invalid model configuration ({err})") from err
    return state


def check_model_config(path: str | os.PathLike, stored: GPTConfig, given: GPTConfig) -> None:
    """Raise :class:`CheckpointError` listing the fields where ``given`` differs from the
    checkpoint's model configuration (:data:`~mhckit.models.gpt.EXECUTION_FIELDS` such as
    ``recompute`` may differ)."""
    a, b = config_to_dict(stored), config_to_dict(given)
    diff = [f"{k}: checkpoint {a[k]!r}, given {b[k]!r}" for k in a
            if a[k] != b[k] and k not in EXECUTION_FIELDS]
    if diff:
        raise CheckpointError(path, "model configuration does not match: " + "; ".join(diff))


def restore(path: str | os.PathLike, target: Any, state: Any, what: str) -> None:
    """``target.load_state_dict(state)``, any failure raised as :class:`CheckpointError`."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
        raise CheckpointError(path, f"{what} state does not fit ({_describe(err)})") from err


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu"
               ) -> tuple[GPT, Tokenizer, dict[str, Any]]:
    """The trained model (in eval mode) and tokenizer of a checkpoint, and the checkpoint."""
    state = load_checkpoint(path)
    model = GPT(state["model_config"])
    restore(checkpoint_path(path), model, state["model"], "model")
    try:
        tokenizer = tokenizer_from_dict(state["tokenizer"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(checkpoint_path(path), f"unusable tokenizer ({err})") from err
    return model.to(device).eval(), tokenizer, state
