"""Tiny Shakespeare at character level, split and sampled as nanoGPT does; token files read
by memory map sample the same batches."""

import numpy as np
import pytest
import torch

from mhckit.models import (
    BatchSampler,
    ByteTokenizer,
    CharTokenizer,
    TextData,
    TokenShard,
    load_text,
)


@pytest.fixture(scope="module")
def data():
    return TextData.load()


def test_bundled_corpus_is_tiny_shakespeare(data):
    text = load_text()
    assert len(text) == 1_115_394 and text.startswith("First Citizen:")
    assert data.tokenizer.vocab_size == 65  # nanoGPT's shakespeare_char vocabulary


def test_split_is_first_90_percent_train_last_10_percent_val(data):
    n = len(load_text())
    assert len(data.train) == int(0.9 * n) and len(data.train) + len(data.val) == n
    assert data.tokenizer.decode(data.val[:20]) == load_text()[int(0.9 * n):][:20]


def test_decode_inverts_encode():
    tok = CharTokenizer.from_text("hello world")
    assert tok.decode(tok.encode("low hello")) == "low hello"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.encode("xyz")


def test_targets_are_inputs_shifted_by_one():
    data = torch.arange(100)
    x, y = BatchSampler(data, 8, 5, seed=0).sample()
    assert x.shape == y.shape == (5, 8)
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)


def test_sampler_state_restores_the_batch_sequence():
    data = torch.arange(1000)
    a = BatchSampler(data, 16, 4, seed=3)
    a.sample()
    state = a.state_dict()
    expected = [a.sample()[0] for _ in range(3)]
    b = BatchSampler(data, 16, 4, seed=99)
    b.load_state_dict(state)
    assert all(torch.equal(b.sample()[0], e) for e in expected)


def test_data_parallel_ranks_split_the_global_batch():
    data = torch.arange(1000)
    whole = BatchSampler(data, 16, 6, seed=5).sample()[0]
    parts = [BatchSampler(data, 16, 3, seed=5, rank=r, world_size=2).sample()[0]
             for r in range(2)]
    assert torch.equal(torch.cat(parts), whole)


def test_block_size_must_fit_the_data():
    with pytest.raises(ValueError, match="block_size"):
        BatchSampler(torch.arange(10), 10, 2, seed=0)


def test_dataset_path_must_exist():
    with pytest.raises(ValueError, match="dataset"):
        load_text("/no/such/file.txt")


def test_memory_mapped_tokens_give_the_batches_of_the_same_tokens_in_memory(tmp_path):
    tokens = torch.randint(50_000, (3000,))
    tokens.numpy().astype(np.uint16).tofile(tmp_path / "t.bin")
    shard = TokenShard(tmp_path / "t.bin", np.uint16, 3000)
    a, b = BatchSampler(shard, 32, 5, seed=7), BatchSampler(tokens, 32, 5, seed=7)
    for _ in range(3):
        (xa, ya), (xb, yb) = a.sample(), b.sample()
        assert xa.dtype == torch.long and torch.equal(xa, xb) and torch.equal(ya, yb)


def test_byte_tokenizer_is_lossless_on_any_unicode_and_decodes_any_bytes():
    tok = ByteTokenizer()
    text = "naïve café — 東京 🙂\n"
    assert tok.encode(text) == list(text.encode("utf-8")) and tok.decode(tok.encode(text)) == text
    assert tok.decode([0xF0, 0x9F, 65]) == "\ufffdA"  # a cut 4-byte sequence, replaced
    assert float(tok.byte_lengths().sum()) == tok.vocab_size == 256
