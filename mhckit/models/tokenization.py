"""Tokenizers: bytes, characters and byte-pair encoding, each storable as a plain dict.

* :class:`ByteTokenizer` -- the 256 values of a UTF-8 byte: any text, lossless, no
  vocabulary to build (the byte-level models of ByT5, arXiv:2105.13626);
* :class:`CharTokenizer` -- one token per character of an alphabet, nanoGPT's
  ``shakespeare_char`` (``stoi`` / ``itos``);
* :class:`BPETokenizer` -- a byte-pair encoding (Sennrich et al., arXiv:1508.07909) of the
  Hugging Face ``tokenizers`` library (the optional extra ``mhckit[bpe]``): a
  ``tokenizer.json`` given by the user, or one trained on the corpus, byte-level as GPT-2's.

Every tokenizer has ``kind``, ``vocab_size``, ``encode``, ``decode`` and ``to_dict``;
:func:`tokenizer_from_dict` inverts ``to_dict``, so a checkpoint or a dataset's
``meta.json`` carries its tokenizer whole (a BPE one as its JSON text) and sampling needs
nothing else. ``byte_lengths()`` gives the UTF-8 length of every token where it is fixed
(bytes, characters), which turns a loss in nats per token into bits per byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import torch

__all__ = ["Tokenizer", "ByteTokenizer", "CharTokenizer", "BPETokenizer", "TOKENIZERS",
           "tokenizer_from_dict", "train_bpe"]

TOKENIZERS = ("byte", "char", "bpe")


class Tokenizer(Protocol):
    kind: str

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, tokens: Iterable[int]) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...

    def byte_lengths(self) -> torch.Tensor | None: ...


class ByteTokenizer:
    """Token ``b`` is the byte ``b`` of the UTF-8 encoding. Decoding replaces an invalid
    sequence (a model may emit one) by U+FFFD rather than failing."""

    kind = "byte"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, tokens: Iterable[int]) -> str:
        return bytes(int(t) for t in tokens).decode("utf-8", errors="replace")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def byte_lengths(self) -> torch.Tensor:
        return torch.ones(self.vocab_size)


class CharTokenizer:
    """One token per character of ``alphabet`` (nanoGPT's ``stoi`` / ``itos``)."""

    kind = "char"

    def __init__(self, alphabet: str) -> None:
        if not alphabet or len(set(alphabet)) != len(alphabet):
            raise ValueError(f"alphabet must be non-empty with distinct characters, got "
                             f"{len(alphabet)} characters, {len(set(alphabet))} distinct")
        self.alphabet = alphabet
        self._index = {ch: i for i, ch in enumerate(alphabet)}

    @classmethod
    def from_text(cls, text: str | Iterable[str]) -> CharTokenizer:
        """The sorted characters of ``text`` (a string, or pieces of one)."""
        chars: set[str] = set()
        for piece in [text] if isinstance(text, str) else text:
            chars.update(piece)
        return cls("".join(sorted(chars)))

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet)

    def encode(self, text: str) -> list[int]:
        unknown = set(text) - self._index.keys()
        if unknown:
            raise ValueError(f"text has characters outside the vocabulary: {sorted(unknown)!r}")
        return [self._index[ch] for ch in text]

    def decode(self, tokens: Iterable[int]) -> str:
        return "".join(self.alphabet[int(t)] for t in tokens)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "alphabet": self.alphabet}

    def byte_lengths(self) -> torch.Tensor:
        return torch.tensor([float(len(ch.encode("utf-8"))) for ch in self.alphabet])


def _tokenizers_library() -> Any:
    try:
        import tokenizers
    except ModuleNotFoundError:
        raise ValueError("tokenizer 'bpe' needs the tokenizers package: "
                         "pip install 'mhckit[bpe]' (or pip install tokenizers)") from None
    return tokenizers


class BPETokenizer:
    """A ``tokenizers.Tokenizer`` (any model the library reads from ``tokenizer.json``)."""

    kind = "bpe"

    def __init__(self, json_text: str) -> None:
        tokenizers = _tokenizers_library()
        try:
            self._tokenizer = tokenizers.Tokenizer.from_str(json_text)
        except Exception as err:  # the library raises a bare Exception for a bad file
            raise ValueError(f"tokenizer file is not a tokenizers JSON file: {err}") from None

    @classmethod
    def from_file(cls, path: str) -> BPETokenizer:
        try:
            with open(path, encoding="utf-8") as f:
                return cls(f.read())
        except OSError as err:
            raise ValueError(f"tokenizer_file {path!r}: {err.strerror}") from None

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, tokens: Iterable[int]) -> str:
        return self._tokenizer.decode([int(t) for t in tokens], skip_special_tokens=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "json": self._tokenizer.to_str()}

    def byte_lengths(self) -> None:
        return None  # a merged token's bytes depend on the tokenizer's decoder


def train_bpe(texts: Iterator[str], vocab_size: int) -> BPETokenizer:
    """A byte-level BPE of at most ``vocab_size`` tokens learnt from ``texts`` (streamed):
    GPT-2's scheme (Radford et al. 2019: the ``ByteLevel`` pre-tokenizer and decoder, the 256
    byte symbols as the initial alphabet), so every text encodes and decodes losslessly."""
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be >= 256 for a byte-level BPE, got {vocab_size}")
    tk = _tokenizers_library()
    tokenizer = tk.Tokenizer(tk.models.BPE())
    tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return BPETokenizer(tokenizer.to_str())


def tokenizer_from_dict(spec: dict[str, Any]) -> Tokenizer:
    """The tokenizer that ``to_dict`` described."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        return CharTokenizer(spec["alphabet"])
    if kind == "bpe":
        return BPETokenizer(spec["json"])
    raise ValueError(f"tokenizer must be a dict with kind in {TOKENIZERS}, got {spec!r}")
