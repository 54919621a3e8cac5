"""Differentiable primitives: Sinkhorn (implicit backward), Cayley, Helmert basis, polar,
fused RMSNorm + linear."""

from mhckit.functional.birkhoff_tangent import birkhoff_tangent_projection
from mhckit.functional.block_energies import block_energies
from mhckit.functional.cayley import cayley, skew
from mhckit.functional.cayley_frame import cayley_frame, iterative_cayley_frame
from mhckit.functional.helmert import helmert_basis
from mhckit.functional.kronecker import kron, kron_apply, nearest_kronecker_factors
from mhckit.functional.multiplicative_step import multiplicative_max_step
from mhckit.functional.polar import polar_refine
from mhckit.functional.rms_norm_linear import rms_norm_linear
from mhckit.functional.sinkhorn import SinkhornInfo, sinkhorn, sinkhorn_scale
from mhckit.functional.small_inverse import small_inverse
from mhckit.functional.stream_mix import stream_mix, stream_write
from mhckit.functional.stream_recompute import optimal_group_size, recompute_streams
from mhckit.functional.support_divisor import support_divisor
from mhckit.functional.value_checks import value_checks, value_checks_enabled

__all__ = ["birkhoff_tangent_projection", "sinkhorn", "sinkhorn_scale", "SinkhornInfo",
           "cayley", "skew", "helmert_basis", "polar_refine",
           "kron", "kron_apply", "nearest_kronecker_factors",
           "block_energies", "cayley_frame", "iterative_cayley_frame", "rms_norm_linear",
           "multiplicative_max_step", "small_inverse", "support_divisor", "value_checks",
           "stream_mix", "stream_write", "recompute_streams", "optimal_group_size",
           "value_checks_enabled"]
