"""``mhckit prepare``: a corpus into nanoGPT's token files, streamed, losslessly."""

import hashlib
import json

import numpy as np
import pytest
import torch

from mhckit.cli import main
from mhckit.models import TextData, TokenShard, load_token_dataset, prepare
from mhckit.models.shards import token_dtype

# German, Japanese, Greek, Russian, an emoji (4 UTF-8 bytes) and Hindi (combining marks)
LINES = ["Grüße aus Köln, schöne Straße.\n", "日本語のテキストです。\n",
         "Καλημέρα κόσμε!\n", "Привет, мир! 🙂\n", "नमस्ते दुनिया\n"]


@pytest.fixture
def corpus(tmp_path):
    """A folder of two multilingual files, and their concatenation (sorted by name)."""
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    a = "".join(LINES * 20)
    b = "".join(reversed(LINES * 7)) + "no final newline ✓"
    (folder / "a.txt").write_text(a, encoding="utf-8")
    (folder / "sub" / "b.txt").write_text(b, encoding="utf-8")
    (folder / "skipped.md").write_text("not matched by *.txt", encoding="utf-8")
    return folder, a + b


def decoded(directory):
    tokenizer, shards, _ = load_token_dataset(directory)
    return [tokenizer.decode(shards[s][:].tolist()) for s in ("train", "val")]


def test_byte_dataset_is_the_utf8_bytes_split_90_10_at_a_character(corpus, tmp_path):
    folder, text = corpus
    meta = prepare([folder], tmp_path / "out", progress=False)
    data = text.encode("utf-8")
    cut = int(0.9 * len(data))
    train = np.fromfile(tmp_path / "out" / "train.bin", dtype=np.uint16)
    val = np.fromfile(tmp_path / "out" / "val.bin", dtype=np.uint16)
    assert bytes(train.astype(np.uint8)) + bytes(val.astype(np.uint8)) == data
    assert cut - 3 <= len(train) <= cut  # cut back to a character boundary only
    assert data[len(train)] & 0xC0 != 0x80  # val starts at a character, not inside one
    assert decoded(tmp_path / "out") == [data[:len(train)].decode(), data[len(train):].decode()]
    assert meta["tokens"] == {"train": len(train), "val": len(val)}
    assert meta["vocab_size"] == 256 and meta["dtype"] == "uint16"
    assert meta["source"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert [f["path"].rsplit("/", 1)[1] for f in meta["source"]["files"]] == ["a.txt", "b.txt"]
    assert json.loads((tmp_path / "out" / "meta.json").read_text()) == meta


@pytest.mark.parametrize("tokenizer", ["byte", "char"])
def test_tiny_chunks_give_the_same_tokens_as_one_chunk(corpus, tmp_path, tokenizer):
    folder, _ = corpus
    prepare([folder], tmp_path / "whole", tokenizer=tokenizer, progress=False)
    prepare([folder], tmp_path / "chunks", tokenizer=tokenizer, chunk_bytes=5, progress=False)
    for split in ("train.bin", "val.bin"):
        assert (tmp_path / "whole" / split).read_bytes() == (
            tmp_path / "chunks" / split).read_bytes()


def test_char_dataset_of_a_text_file_matches_nanogpts_character_split(tmp_path):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 30
    (tmp_path / "t.txt").write_text(text)
    prepare([tmp_path / "t.txt"], tmp_path / "out", tokenizer="char", progress=False)
    direct, shards = TextData.load(str(tmp_path / "t.txt")), TextData.load(str(tmp_path / "out"))
    assert shards.tokenizer.alphabet == "".join(sorted(set(text)))  # nanoGPT's vocabulary
    assert torch.equal(shards.train[:], direct.train) and torch.equal(shards.val[:], direct.val)


def test_bpe_trained_on_the_corpus_round_trips_and_its_file_can_be_reused(corpus, tmp_path):
    pytest.importorskip("tokenizers", reason="the optional bpe extra")
    folder, text = corpus
    meta = prepare([folder], tmp_path / "bpe", tokenizer="bpe", vocab_size=300, progress=False)
    assert 256 < meta["vocab_size"] <= 300
    assert meta["tokens"]["train"] + meta["tokens"]["val"] < len(text.encode())  # merges
    assert "".join(decoded(tmp_path / "bpe")) == text
    again = prepare([folder], tmp_path / "file", tokenizer="bpe", progress=False,
                    tokenizer_file=str(tmp_path / "bpe" / "tokenizer.json"))
    assert again["tokens"] == meta["tokens"]
    assert (tmp_path / "file" / "val.bin").read_bytes() == (tmp_path / "bpe" / "val.bin"
                                                            ).read_bytes()


def test_vocabularies_past_uint16_are_stored_as_uint32(tmp_path):
    assert token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.uint32
    np.array([70_000, 3, 65_536], dtype=np.uint32).tofile(tmp_path / "x.bin")
    shard = TokenShard(tmp_path / "x.bin", np.uint32, 3)
    assert shard[torch.tensor([[2, 0]])].tolist() == [[65_536, 70_000]]


@pytest.mark.parametrize("setup, kwargs, match", [
    (lambda d: (d / "f.txt").write_bytes(b"ok\n\xff\xfe"), {}, r"f.txt: not UTF-8 text \(byte 3"),
    (lambda d: (d / "f.txt").write_text(""), {}, "no text"),
    (lambda d: (d / "f.txt").write_text("ab"), {}, "too small"),
    (lambda d: (d / "f.txt").write_text("abc" * 10), {"tokenizer": "bpe"}, "vocab_size"),
    (lambda d: (d / "f.txt").write_text("abc" * 10), {"vocab_size": 300}, "'bpe' only"),
    (lambda d: (d / "f.txt").write_text("abc" * 10), {"tokenizer": "wordpiece"},
     "tokenizer must be one of"),
])
def test_bad_inputs_raise_naming_the_problem(tmp_path, setup, kwargs, match):
    setup(tmp_path)
    with pytest.raises(ValueError, match=match):
        prepare([tmp_path / "f.txt"], tmp_path / "out", progress=False, **kwargs)
    assert not list(tmp_path.glob("out/*"))  # nothing left behind, not even temporary files


def test_an_existing_dataset_is_not_overwritten_silently(corpus, tmp_path):
    folder, _ = corpus
    prepare([folder], tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="already holds a dataset"):
        prepare([folder], tmp_path / "out", progress=False)
    prepare([folder], tmp_path / "out", tokenizer="char", overwrite=True, progress=False)
    assert load_token_dataset(tmp_path / "out")[0].kind == "char"


def test_a_truncated_token_file_is_refused(corpus, tmp_path):
    folder, _ = corpus
    prepare([folder], tmp_path / "out", progress=False)
    with (tmp_path / "out" / "val.bin").open("r+b") as f:
        f.truncate(10)
    with pytest.raises(ValueError, match=r"val.bin: 10 bytes, expected \d+ tokens of uint16"):
        TextData.load(str(tmp_path / "out"))


def test_prepare_command_reports_counts_and_errors_in_one_line(corpus, tmp_path, capsys):
    folder, _ = corpus
    assert main(["prepare", str(folder), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    assert "2 file(s)" in capsys.readouterr().out
    assert main(["prepare", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "p")]) == 2
    assert capsys.readouterr().err.startswith("mhckit prepare: error: input must be a file")


@pytest.mark.parametrize("command", ["prepare", "eval"])
def test_new_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0 and "usage: mhckit " + command in capsys.readouterr().out
