"""block_energies: orthogonal ns x ns -> doubly stochastic n x n."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mhckit.functional import block_energies

F64 = torch.float64


def _haar(size, batch, seed):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(batch, size, size, dtype=F64, generator=gen))
    return q


@given(n=st.integers(1, 5), s=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_block_energies_of_an_orthogonal_matrix_are_doubly_stochastic(n, s, seed):
    h = block_energies(_haar(n * s, 3, seed), s)
    assert h.shape == (3, n, n) and (h >= 0).all()
    torch.testing.assert_close(h.sum(-1), torch.ones(3, n, dtype=F64), atol=1e-13, rtol=0)
    torch.testing.assert_close(h.sum(-2), torch.ones(3, n, dtype=F64), atol=1e-13, rtol=0)


def test_with_unit_blocks_it_is_the_entrywise_square():
    q = _haar(5, 2, 0)
    torch.testing.assert_close(block_energies(q, 1), q * q)


def test_the_set_for_s_is_contained_in_the_set_for_every_multiple_of_s():
    q = _haar(6, 2, 1).contiguous()  # n = 3, s = 2
    for k in (2, 3):
        lifted = torch.kron(q, torch.eye(k, dtype=F64))  # orthogonal, blocks Q_ij ⊗ I_k
        torch.testing.assert_close(block_energies(lifted, 2 * k), block_energies(q, 2))


@pytest.mark.parametrize("n,s", [(1, 1), (3, 1), (4, 2), (2, 3)])
def test_block_energies_are_the_block_sums_of_squares_with_their_gradients(n, s):
    q = torch.randn(5, n * s, n * s, dtype=F64, requires_grad=True)
    reference = q.reshape(5, n, s, n, s).square().sum(dim=(-3, -1)) / s
    torch.testing.assert_close(block_energies(q, s), reference, atol=1e-15, rtol=0)
    weights = torch.randn(5, n, n, dtype=F64)
    (ours,) = torch.autograd.grad((block_energies(q, s) * weights).sum(), q)
    (autograd,) = torch.autograd.grad((reference * weights).sum(), q)
    torch.testing.assert_close(ours, autograd, atol=1e-15, rtol=0)


@pytest.mark.parametrize("batch", [(2,), ()])
def test_block_energies_backward_passes_gradcheck_and_gradgradcheck(batch):
    q = torch.randn(*batch, 6, 6, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q: block_energies(q, 2), (q,))
    assert torch.autograd.gradgradcheck(lambda q: block_energies(q, 2), (q,))


def test_block_energies_jacobian_under_vmap():
    q = torch.randn(3, 6, 6, dtype=F64)
    jac = torch.func.vmap(torch.func.jacrev(lambda x: block_energies(x, 3)))(q)
    expected = torch.stack([torch.autograd.functional.jacobian(
        lambda x: block_energies(x, 3), x) for x in q])
    torch.testing.assert_close(jac, expected, atol=1e-15, rtol=0)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="s must be >= 1"):
        block_energies(torch.eye(4), 0)
    with pytest.raises(TypeError, match="s must be an int"):
        block_energies(torch.eye(4), 2.0)
    with pytest.raises(ValueError, match="trailing shape"):
        block_energies(torch.eye(5), 2)
    with pytest.raises(TypeError, match="q must be"):
        block_energies([[1.0]], 1)
