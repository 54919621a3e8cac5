"""The lean read/mix of a hyper-connection: ``stream_mix(x, H_pre, H_res) = (H_pre·x, H_res·x)``
with a custom backward that saves only ``x`` and the coefficients."""

import pytest
import torch

from mhckit.functional.stream_mix import stream_mix, stream_write
from mhckit.nn import HyperConnection

SHAPES = {  # x, H_pre, H_res: per token, static, and mixed (Riemannian H_res)
    "dynamic": ((2, 3, 4, 5), (2, 3, 4), (2, 3, 4, 4)),
    "static": ((2, 3, 4, 5), (4,), (4, 4)),
    "static-res": ((2, 3, 4, 5), (2, 3, 4), (4, 4)),
}


def inputs(shapes, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, dtype=dtype, generator=g, requires_grad=True) for s in shapes]


@pytest.mark.parametrize("case", SHAPES)
def test_stream_mix_is_the_read_and_the_mix(case):
    x, h_pre, h_res = inputs(SHAPES[case])
    read, mixed = stream_mix(x, h_pre, h_res)
    torch.testing.assert_close(read, torch.einsum("...i,...ic->...c", h_pre, x))
    torch.testing.assert_close(mixed, torch.einsum("...ij,...jc->...ic", h_res, x))


def test_stream_mix_gradient_of_one_output_alone():
    x, h_pre, h_res = inputs(SHAPES["dynamic"])
    assert torch.autograd.gradcheck(lambda *a: stream_mix(*a)[0], (x, h_pre, h_res))
    assert torch.autograd.gradcheck(lambda *a: stream_mix(*a)[1], (x, h_pre, h_res))


def saved_storages(fn):
    """``{storage address: bytes}`` of every tensor autograd saves while ``fn()`` runs."""
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, saved


def test_stream_mix_saves_only_its_inputs():
    x, h_pre, h_res = inputs(SHAPES["dynamic"])
    (read, mixed), saved = saved_storages(lambda: stream_mix(x, h_pre, h_res))
    assert set(saved) == {t.untyped_storage().data_ptr() for t in (x, h_pre, h_res)}
    # the read has its own storage: keeping it does not keep the (1 + n) x C product
    assert read.untyped_storage().nbytes() == read.numel() * read.element_size()


@pytest.mark.parametrize("mixer", ["hc", "mhc", "go-mhc"])
def test_a_block_saves_its_stream_once_and_no_product_of_width_one_plus_n(mixer):
    B, T, n, C = 4, 64, 4, 128  # enough tokens that no parameter-sized tensor reaches C
    branch = torch.nn.Sequential(torch.nn.LayerNorm(C), torch.nn.Linear(C, C))
    block = HyperConnection(C, n, mixer, branch=branch)
    x = torch.randn(B, T, n, C, requires_grad=True)
    _, saved = saved_storages(lambda: block(x))
    widths = sorted(nbytes // (B * T * 4) for nbytes in saved.values())  # floats per token
    # C or more per token: the stream x (n·C), the branch's input and its LayerNorm output,
    # and F(h) for the write (C each); the coefficients are O(n²) < C per token. Autograd
    # through cat/matmul/split kept the (1 + n)·C product instead of the branch input.
    assert [w for w in widths if w >= C] == [C, C, C, n * C]


WRITE_SHAPES = {  # m, H_post, F: per token, static H_post, and F broadcast over a batch axis
    "dynamic": ((2, 3, 4, 5), (2, 3, 4), (2, 3, 5)),
    "static": ((2, 3, 4, 5), (4,), (2, 3, 5)),
    "broadcast-out": ((2, 3, 4, 5), (2, 3, 4), (3, 5)),
}


@pytest.mark.parametrize("case", WRITE_SHAPES)
def test_stream_write_is_the_mix_plus_the_weighted_branch_output(case):
    mixed, h_post, out = inputs(WRITE_SHAPES[case])
    expected = mixed + h_post.unsqueeze(-1) * out.unsqueeze(-2)
    torch.testing.assert_close(stream_write(mixed, h_post, out), expected)


@pytest.mark.parametrize("function, shapes", [
    *[(stream_mix, SHAPES[case]) for case in SHAPES],
    *[(stream_write, WRITE_SHAPES[case]) for case in WRITE_SHAPES],
], ids=[*[f"mix-{c}" for c in SHAPES], *[f"write-{c}" for c in WRITE_SHAPES]])
def test_gradcheck_and_gradgradcheck_in_float64(function, shapes):
    args = inputs(shapes)
    assert torch.autograd.gradcheck(function, args)
    assert torch.autograd.gradgradcheck(function, args)


def test_stream_write_saves_only_the_write_weights_and_the_branch_output():
    mixed, h_post, out = inputs(WRITE_SHAPES["dynamic"])
    _, saved = saved_storages(lambda: stream_write(mixed, h_post, out))
    assert set(saved) == {t.untyped_storage().data_ptr() for t in (h_post, out)}


def test_stream_mix_and_write_agree_with_the_composite_under_vmap_of_jacrev():
    x, h_pre, h_res, h_post = inputs(((3, 4, 5), (3, 4), (3, 4, 4), (3, 4)))

    def block(mix, write, x, h_pre, h_res, h_post):
        read, mixed = mix(x, h_pre, h_res)
        return write(mixed, h_post, read.tanh())

    def composite_mix(x, h_pre, h_res):
        return torch.einsum("...i,...ic->...c", h_pre, x), h_res @ x

    def composite_write(mixed, h_post, out):
        return mixed + h_post.unsqueeze(-1) * out.unsqueeze(-2)

    jacobian = torch.func.vmap(torch.func.jacrev(
        lambda *a: block(stream_mix, stream_write, *a), argnums=(0, 1, 2, 3)))
    reference = torch.func.vmap(torch.func.jacrev(
        lambda *a: block(composite_mix, composite_write, *a), argnums=(0, 1, 2, 3)))
    args = [t.detach() for t in (x, h_pre, h_res, h_post)]
    for ours, ref in zip(jacobian(*args), reference(*args), strict=True):
        torch.testing.assert_close(ours, ref)


def test_mix_and_write_of_expanded_streams_reduced_by_a_mean_gradcheck_in_float64():
    # the GPT's first block reads streams expanded from one (stride 0) and its last output is
    # averaged over the streams (a stride-0 cotangent): both are made contiguous once
    stream, h_pre, h_res, h_post = inputs(((2, 3, 1, 5), (2, 3, 4), (2, 3, 4, 4), (2, 3, 4)))

    def block(stream, h_pre, h_res, h_post):
        read, mixed = stream_mix(stream.expand(2, 3, 4, 5), h_pre, h_res)
        return stream_write(mixed, h_post, read.tanh()).mean(-2)

    assert torch.autograd.gradcheck(block, (stream, h_pre, h_res, h_post))
    assert torch.autograd.gradgradcheck(block, (stream, h_pre, h_res, h_post))
