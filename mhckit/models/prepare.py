"""Tokenize a corpus into a token dataset (:mod:`mhckit.models.shards`), streaming.

The corpus is the concatenation, byte for byte, of its files in the order given (a folder
contributes its files matching ``pattern``, recursively, sorted by path). Its first
``train_fraction`` of the bytes -- cut back to a character boundary -- is the training
split and the rest the validation split, as nanoGPT's ``prepare.py`` cuts the first 90% of
the text. Files are read in chunks of ``chunk_bytes`` (each extended to the end of its last
line, so a BPE never sees a word cut in two) and tokens are appended to the ``.bin`` files
as they come: memory use does not grow with the corpus. A character alphabet or a BPE
trained on the corpus needs one more pass over it before that one.

The files are written under temporary names and renamed when complete, ``meta.json`` last,
so an interrupted run never leaves something that reads as a dataset.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mhckit.models.shards import FORMAT, META_NAME, SPLITS, TOKENIZER_FILE, VERSION, token_dtype
from mhckit.models.tokenization import (
    TOKENIZERS,
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    Tokenizer,
    train_bpe,
)

__all__ = ["prepare", "corpus_files", "read_corpus"]

CHUNK_BYTES = 1 << 20


def corpus_files(inputs: Sequence[str | Path], pattern: str = "*.txt") -> list[Path]:
    """The files of ``inputs``: a file is itself, a folder its files matching ``pattern``."""
    if not inputs:
        raise ValueError("inputs must name at least one file or folder, got none")
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob(pattern) if p.is_file())
            if not found:
                raise ValueError(f"input folder {item} has no files matching {pattern!r}")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise ValueError(f"input must be a file or folder, got {str(item)!r} (not found)")
    return files


def _file_pieces(path: Path, chunk_bytes: int) -> Iterator[str]:
    """The text of ``path`` in pieces of about ``chunk_bytes``, each ending with a line."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    carry, offset = "", 0
    with path.open("rb") as f:
        while True:
            raw = f.read(chunk_bytes)
            pending = len(decoder.getstate()[0])
            try:
                text = carry + decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as err:
                raise ValueError(f"input {path}: not UTF-8 text (byte "
                                 f"{offset - pending + err.start}: {err.reason})") from None
            offset += len(raw)
            if not raw:
                if text:
                    yield text
                return
            cut = text.rfind("\n") + 1
            if cut == 0 and len(text) < 4 * chunk_bytes:  # no line end yet: read on
                carry = text
                continue
            cut = cut or len(text)
            carry = text[cut:]
            yield text[:cut]


def read_corpus(files: Sequence[Path], chunk_bytes: int = CHUNK_BYTES,
                bar: tqdm | None = None) -> Iterator[str]:
    """The corpus as text pieces, in order (``bar`` advances by their UTF-8 bytes)."""
    for path in files:
        for piece in _file_pieces(path, chunk_bytes):
            if bar is not None:
                bar.update(len(piece.encode("utf-8")))
            yield piece


def _char_boundary(data: bytes, k: int) -> int:
    """The largest ``j <= k`` at which ``data`` can be cut between two UTF-8 characters."""
    while 0 < k < len(data) and data[k] & 0xC0 == 0x80:  # a continuation byte
        k -= 1
    return k


class _TokenFile:
    """Tokens appended to ``path`` through a temporary file renamed by :meth:`commit`."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.path, self.dtype, self.tokens, self.bytes = path, dtype, 0, 0
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.file = self.tmp.open("wb")

    def write(self, tokens: list[int] | np.ndarray, n_bytes: int) -> None:
        np.asarray(tokens, dtype=self.dtype).tofile(self.file)
        self.tokens += len(tokens)
        self.bytes += n_bytes

    def commit(self) -> None:
        self.file.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def _encode(tokenizer: Tokenizer, data: bytes) -> list[int] | np.ndarray:
    """The tokens of UTF-8 ``data``; bytes are their own tokens (an array, no Python list)."""
    if isinstance(tokenizer, ByteTokenizer):
        return np.frombuffer(data, dtype=np.uint8)
    return tokenizer.encode(data.decode("utf-8"))


def _build_tokenizer(kind: str, files: Sequence[Path], total: int, *, tokenizer_file: str | None,
                     vocab_size: int | None, chunk_bytes: int, progress: bool) -> Tokenizer:
    if kind not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {kind!r}")
    if kind != "bpe" and (tokenizer_file or vocab_size):
        raise ValueError(f"tokenizer_file and vocab_size apply to tokenizer 'bpe' only, got "
                         f"tokenizer {kind!r}")
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe" and tokenizer_file:
        if vocab_size:
            raise ValueError("give tokenizer_file or vocab_size for 'bpe', not both")
        return BPETokenizer.from_file(tokenizer_file)
    if kind == "bpe" and not vocab_size:
        raise ValueError("tokenizer 'bpe' needs tokenizer_file (a tokenizer.json) or "
                         "vocab_size (to train one on the corpus)")
    desc = "alphabet" if kind == "char" else f"train BPE ({vocab_size})"
    with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not progress) as bar:
        pieces = read_corpus(files, chunk_bytes, bar)
        return CharTokenizer.from_text(pieces) if kind == "char" else train_bpe(pieces,
                                                                                vocab_size)


def prepare(inputs: Sequence[str | Path], out_dir: str | Path, *, tokenizer: str = "byte",
            tokenizer_file: str | None = None, vocab_size: int | None = None,
            train_fraction: float = 0.9, pattern: str = "*.txt", overwrite: bool = False,
            chunk_bytes: int = CHUNK_BYTES, progress: bool = True) -> dict[str, Any]:
    """Tokenize ``inputs`` into ``out_dir`` (``train.bin``, ``val.bin``, ``meta.json``);
    returns the metadata written. ``tokenizer`` is ``"byte"``, ``"char"`` or ``"bpe"``
    (with ``tokenizer_file``, or ``vocab_size`` to train one on the corpus)."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    out_dir = Path(out_dir)
    if (out_dir / META_NAME).exists() and not overwrite:
        raise ValueError(f"out {out_dir} already holds a dataset ({META_NAME}); choose another "
                         f"folder or pass overwrite=True (--overwrite)")
    files = corpus_files(inputs, pattern)
    sizes = [p.stat().st_size for p in files]
    total = sum(sizes)
    if total == 0:
        raise ValueError(f"inputs hold no text: {len(files)} empty file(s)")
    tok = _build_tokenizer(tokenizer, files, total, tokenizer_file=tokenizer_file,
                           vocab_size=vocab_size, chunk_bytes=chunk_bytes, progress=progress)
    dtype = token_dtype(tok.vocab_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = {s: _TokenFile(out_dir / f"{s}.bin", dtype) for s in SPLITS}
    cut, done = int(train_fraction * total), 0
    digest, file_digests = hashlib.sha256(), []
    try:
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"tokenize ({tokenizer})",
                  disable=not progress) as bar:
            for path in files:
                file_digest, file_bytes = hashlib.sha256(), 0
                for piece in _file_pieces(path, chunk_bytes):
                    data = piece.encode("utf-8")
                    digest.update(data)
                    file_digest.update(data)
                    file_bytes += len(data)
                    k = _char_boundary(data, min(max(cut - done, 0), len(data)))
                    for split, part in (("train", data[:k]), ("val", data[k:])):
                        if part:
                            splits[split].write(_encode(tok, part), len(part))
                    done += len(data)
                    bar.update(len(data))
                file_digests.append({"path": str(path.resolve()), "bytes": file_bytes,
                                     "sha256": file_digest.hexdigest()})
        for split, f in splits.items():
            if f.tokens < 2:
                raise ValueError(f"inputs too small: the {split} split has {f.tokens} tokens "
                                 f"({total} bytes in all, train_fraction {train_fraction})")
    except BaseException:
        for f in splits.values():
            f.discard()
        raise
    (out_dir / META_NAME).unlink(missing_ok=True)  # an old dataset stops reading as one
    for f in splits.values():
        f.commit()
    spec = tok.to_dict()
    if isinstance(tok, BPETokenizer):
        (out_dir / TOKENIZER_FILE).write_text(spec.pop("json"), encoding="utf-8")
        spec["file"] = TOKENIZER_FILE
    meta = {"format": FORMAT, "version": VERSION, "tokenizer": spec,
            "vocab_size": tok.vocab_size, "dtype": dtype.name, "train_fraction": train_fraction,
            "tokens": {s: f.tokens for s, f in splits.items()},
            "bytes": {s: f.bytes for s, f in splits.items()},
            "source": {"sha256": digest.hexdigest(), "bytes": done, "files": file_digests}}
    tmp = out_dir / f".{META_NAME}.tmp"
    tmp.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / META_NAME)
    return meta
