"""The loss of a trained checkpoint on a dataset split, without training.

The split is cut into consecutive windows of ``block_size`` tokens (the last one shorter);
window ``w`` predicts its tokens ``1..`` from the ones before them in the window, so every
token but the first is a target exactly once and the result does not depend on a seed:

    loss = (1/N) Σ_t −ln p(x_t | window prefix)           (nats per token)
    bits per byte = Σ_t −ln p(x_t | ...) / (ln 2 · Σ_t bytes(x_t))

with ``bytes(x)`` the UTF-8 length of token ``x``: 1 for the byte tokenizer (bits per byte
is then ``loss / ln 2``), the character's length for the character one; a BPE token has no
fixed length and bits per byte is not reported for it.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.nn import functional as F

from mhckit.models.checkpoint import checkpoint_path, load_model
from mhckit.models.data import TextData
from mhckit.models.distributed import resolve_device
from mhckit.models.training import autocast

__all__ = ["Evaluation", "evaluate_checkpoint"]


@dataclass(frozen=True)
class Evaluation:
    checkpoint: str
    step: int  # training iterations behind the checkpoint
    dataset: str
    split: str
    tokens: int  # targets scored
    loss: float  # mean cross-entropy, nats per token
    bits_per_byte: float | None  # None where tokens have no fixed byte length (BPE)

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def evaluate_checkpoint(checkpoint: str | os.PathLike, *, dataset: str | None = None,
                        split: str = "val", batch_size: int = 16, max_tokens: int | None = None,
                        device: str = "auto", dtype: str = "auto") -> Evaluation:
    """Evaluate ``checkpoint`` (a file or run directory) on ``split`` of ``dataset`` (default:
    the dataset it was trained on); ``max_tokens`` scores only the first windows of the split
    (about that many targets)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    target = resolve_device(device)
    model, tokenizer, state = load_model(checkpoint, target)
    dataset = dataset or state["config"]["train"]["dataset"]
    data = TextData.load(dataset)
    if data.tokenizer.to_dict() != tokenizer.to_dict():
        raise ValueError(f"dataset {dataset!r} is tokenized differently from checkpoint "
                         f"{checkpoint_path(checkpoint)} ({data.tokenizer.kind} tokens, "
                         f"vocabulary {data.tokenizer.vocab_size}; checkpoint: "
                         f"{tokenizer.kind}, {tokenizer.vocab_size})")
    tokens = data.split(split)
    block = model.config.block_size
    end = len(tokens) if max_tokens is None else min(len(tokens), max_tokens + 1)
    if end < 2:
        raise ValueError(f"split {split!r} of dataset {dataset!r} has {len(tokens)} tokens, "
                         f"at least 2 are needed")
    n_full, rest = divmod(end - 1, block)  # windows of block_size targets, one shorter
    groups = [(list(range(i * block, min(i + batch_size, n_full) * block, block)), block)
              for i in range(0, n_full, batch_size)]
    if rest:
        groups.append(([n_full * block], rest))
    byte_lengths = tokenizer.byte_lengths()
    nats = torch.zeros((), dtype=torch.float64)
    n_targets, n_bytes = 0, 0.0
    for starts, width in groups:
        window = tokens[torch.tensor(starts)[:, None] + torch.arange(width + 1)]
        x, y = window[:, :-1].contiguous().to(target), window[:, 1:].contiguous().to(target)
        with autocast(target, dtype):
            logits, _ = model(x, y)
        nats += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(),
                                reduction="sum").double().cpu()
        n_targets += y.numel()
        if byte_lengths is not None:
            n_bytes += float(byte_lengths[y.cpu()].sum())
    loss = float(nats) / n_targets
    bpb = float(nats) / (math.log(2) * n_bytes) if byte_lengths is not None else None
    return Evaluation(str(checkpoint_path(checkpoint)), state["step"], dataset, split,
                      n_targets, loss, bpb)
