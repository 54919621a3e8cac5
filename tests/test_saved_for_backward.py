"""What the parametrizations keep for the backward pass, per point (the activation memory of a
dynamic ``H_res``, docs/benchmarks.md "Activation memory and recompute").

Counted as the unique storages handed to autograd's saved-tensor hooks, in float32 numbers
per matrix of a batch of ``B``; constants (bases, index tables) add under 1 at this ``B``.
"""

import pytest
import torch

from mhckit.functional import cayley
from mhckit.manifolds import Grassmann, Orthostochastic, SpectralSphere, Stiefel

B = 512
_BASE = cayley(torch.ones(6, 6).triu(1) / 4 - torch.ones(6, 6).tril(-1) / 4)  # in SO(6)


def _saved_floats_per_point(fn, z):
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(z)
    return sum(storages.values()) / 4 / B


def _mixer(manifold):
    return lambda z: manifold.as_matrix(manifold.parametrize(z))


@pytest.mark.parametrize("name,fn,shape,kept", [
    # the output, which its consumer keeps anyway: 36 (was 72, Cayley(A) and base @ Cayley(A))
    ("cayley around a base", lambda a: cayley(a - a.mT, _BASE).square(), (6, 6), 36),
    # go-mHC's Q (ns x ns), which block_energies keeps: 64 (was 128)
    ("go-mhc", _mixer(Orthostochastic(4, 2)), (28,), 64),
    # z, U, V: 11 + 9 + 9 (was 87: the intermediates of the two closed forms, U diag σ, tanh)
    ("shc", _mixer(SpectralSphere(4, generators="tanh")), (11,), 29),
    # z and the frame U that U Uᵀ keeps: 4 + 8 (was 98: the float64 solve, the refinement)
    ("jpmhc-grassmann", _mixer(Grassmann(4, 2)), (4,), 12),
    ("thin Stiefel", Stiefel(5, 3).parametrize, (9,), 9),  # z (was 177)
])
def test_a_point_keeps_only_what_its_backward_reads(name, fn, shape, kept):
    z = (0.5 * torch.randn(B, *shape)).requires_grad_()
    assert _saved_floats_per_point(fn, z) < kept + 1
