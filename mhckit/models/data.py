"""Training data: the bundled Tiny Shakespeare corpus or a text file at character level, or
a token dataset prepared by ``mhckit prepare`` (:mod:`mhckit.models.shards`, read by memory
map); the nanoGPT train/val split and a seeded batch sampler whose state can be
checkpointed.

A text file follows nanoGPT's ``data/shakespeare_char/prepare.py``: the vocabulary is the
sorted set of characters of the whole text, the first 90% of the characters are the
training set and the last 10% the validation set. Batches follow its ``get_batch``:
``batch_size`` random offsets ``i`` in ``[0, len(data) - block_size)``, inputs
``data[i : i + block_size]`` and targets shifted by one, ``data[i + 1 : i + 1 + block_size]``.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import torch

from mhckit.models.shards import TokenShard, is_token_dataset, load_token_dataset
from mhckit.models.tokenization import CharTokenizer, Tokenizer

__all__ = ["BUNDLED_CORPUS", "CharTokenizer", "TextData", "BatchSampler", "load_text"]

BUNDLED_CORPUS = "tinyshakespeare"
TRAIN_FRACTION = 0.9


def load_text(dataset: str = BUNDLED_CORPUS) -> str:
    """The text of ``dataset``: the bundled ``"tinyshakespeare"`` or a path to a UTF-8 file."""
    if dataset == BUNDLED_CORPUS:
        resource = importlib.resources.files("mhckit") / "data" / "tinyshakespeare.txt"
        return resource.read_text(encoding="utf-8")
    path = Path(dataset)
    if not path.is_file():
        raise ValueError(f"dataset must be {BUNDLED_CORPUS!r}, a path to a text file or a "
                         f"folder made by mhckit prepare, got {dataset!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"dataset {str(path)!r} is not UTF-8 text: byte "
                         f"{err.object[err.start:err.start + 1].hex()} at offset {err.start} "
                         f"({err.reason}); convert it, e.g. iconv -t utf-8") from None
    if not text:
        raise ValueError(f"dataset {str(path)!r} is empty")
    return text


@dataclass
class TextData:
    """A tokenized corpus split into ``train`` and ``val`` tokens: int64 tensors, or
    :class:`~mhckit.models.shards.TokenShard` files indexed the same way."""

    tokenizer: Tokenizer
    train: torch.Tensor | TokenShard
    val: torch.Tensor | TokenShard
    name: str = "Tiny Shakespeare"  # for plot titles

    @classmethod
    def load(cls, dataset: str = BUNDLED_CORPUS) -> TextData:
        """The bundled corpus, a text file (characters) or a prepared token folder."""
        if dataset != BUNDLED_CORPUS and is_token_dataset(dataset):
            tokenizer, shards, _ = load_token_dataset(dataset)
            return cls(tokenizer, shards["train"], shards["val"], Path(dataset).name)
        text = load_text(dataset)
        tokenizer = CharTokenizer.from_text(text)
        tokens = torch.tensor(tokenizer.encode(text), dtype=torch.long)
        n_train = int(TRAIN_FRACTION * len(tokens))
        name = "Tiny Shakespeare" if dataset == BUNDLED_CORPUS else Path(dataset).name
        return cls(tokenizer, tokens[:n_train], tokens[n_train:], name)

    @property
    def title(self) -> str:
        """``"<dataset>, <tokenizer> tokens"``, e.g. ``"Tiny Shakespeare, char tokens"``."""
        return f"{self.name}, {self.tokenizer.kind} tokens"

    def split(self, name: str) -> torch.Tensor | TokenShard:
        if name not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {name!r}")
        return self.train if name == "train" else self.val


class BatchSampler:
    """Random ``(x, y)`` batches of ``block_size`` tokens from ``data``, from its own
    ``torch.Generator`` so that its position is part of a checkpoint (:meth:`state_dict`).

    With ``world_size > 1`` every rank draws the same ``batch_size · world_size`` offsets
    and keeps its own slice: all ranks stay in one sampler state, and a data-parallel run
    sees the batches a single process with the global batch would see.
    """

    def __init__(self, data: torch.Tensor | TokenShard, block_size: int, batch_size: int, *,
                 seed: int, rank: int = 0, world_size: int = 1) -> None:
        if len(data) <= block_size:
            raise ValueError(f"block_size must be < number of tokens ({len(data)}), "
                             f"got {block_size}")
        self.data, self.block_size, self.batch_size = data, block_size, batch_size
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets, each ``(batch_size, block_size)`` int64 on ``device``."""
        offsets = torch.randint(len(self.data) - self.block_size,
                                (self.batch_size * self.world_size,), generator=self.generator)
        offsets = offsets[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        window = torch.arange(self.block_size + 1)
        chunks = self.data[offsets[:, None] + window]  # (batch_size, block_size + 1)
        x, y = chunks[:, :-1].contiguous(), chunks[:, 1:].contiguous()
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])
