"""Token datasets on disk, nanoGPT's format: ``DIR/train.bin`` and ``DIR/val.bin`` hold the
tokens as one flat array each (``uint16``, or ``uint32`` when the vocabulary has more than
65,536 tokens; native byte order), and ``DIR/meta.json`` says how to read them::

    {"format": "mhckit-tokens", "version": 1,
     "tokenizer": {"kind": "byte"},             # or {"kind": "char", "alphabet": ...},
                                                # or {"kind": "bpe", "file": "tokenizer.json"}
     "vocab_size": 256, "dtype": "uint16", "train_fraction": 0.9,
     "tokens": {"train": ..., "val": ...}, "bytes": {"train": ..., "val": ...},
     "source": {"sha256": ..., "bytes": ..., "files": [{"path", "bytes", "sha256"}, ...]}}

Training reads a split through :class:`TokenShard`, a ``numpy.memmap`` opened anew for every
batch as nanoGPT's ``get_batch`` does, so a corpus larger than memory trains without being
loaded. :mod:`mhckit.models.prepare` writes the format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mhckit.models.tokenization import Tokenizer, tokenizer_from_dict

__all__ = ["FORMAT", "VERSION", "META_NAME", "SPLITS", "TokenShard", "token_dtype",
           "is_token_dataset", "read_meta", "load_token_dataset"]

FORMAT, VERSION = "mhckit-tokens", 1
META_NAME, TOKENIZER_FILE = "meta.json", "tokenizer.json"
SPLITS = ("train", "val")


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned integer type that holds every token id."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


class TokenShard:
    """The tokens of one ``.bin`` file, indexed like a 1-D int64 tensor without loading it:
    ``shard[index]`` for a tensor of positions or a slice returns an int64 tensor."""

    def __init__(self, path: str | Path, dtype: np.dtype, length: int) -> None:
        self.path, self.dtype, self.length = Path(path), np.dtype(dtype), length
        size = self.path.stat().st_size if self.path.is_file() else None
        if size != length * self.dtype.itemsize:
            raise ValueError(f"token file {self.path}: {size} bytes, expected {length} tokens "
                             f"of {self.dtype.name} ({length * self.dtype.itemsize} bytes)")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: torch.Tensor | slice) -> torch.Tensor:
        # a fresh memmap per read, as nanoGPT's get_batch: the mapping is dropped at once
        tokens = np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.length,))
        where = index if isinstance(index, slice) else index.numpy()
        return torch.from_numpy(tokens[where].astype(np.int64))


def is_token_dataset(path: str | Path) -> bool:
    return (Path(path) / META_NAME).is_file()


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The validated ``meta.json`` of a token dataset, its tokenizer spec made whole (a BPE
    tokenizer's JSON read from its file)."""
    path = Path(directory) / META_NAME
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"dataset {directory}: cannot read {META_NAME} ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"dataset {directory}: {META_NAME} is not a mhckit token dataset "
                         f"(format {FORMAT!r} expected)")
    if meta.get("version") != VERSION:
        raise ValueError(f"dataset {directory}: format version {meta.get('version')!r}, this "
                         f"mhckit reads version {VERSION}")
    spec = dict(meta["tokenizer"])
    if "file" in spec:
        spec["json"] = (Path(directory) / spec.pop("file")).read_text(encoding="utf-8")
    meta["tokenizer"] = spec
    return meta


def load_token_dataset(directory: str | Path
                       ) -> tuple[Tokenizer, dict[str, TokenShard], dict[str, Any]]:
    """The tokenizer, the ``train`` and ``val`` shards and the metadata of a prepared dataset."""
    meta = read_meta(directory)
    tokenizer = tokenizer_from_dict(meta["tokenizer"])
    dtype = np.dtype(meta["dtype"])
    shards = {split: TokenShard(Path(directory) / f"{split}.bin", dtype, meta["tokens"][split])
              for split in SPLITS}
    return tokenizer, shards, meta
