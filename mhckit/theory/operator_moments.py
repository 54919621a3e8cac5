"""Operator-valued (``n × n``-amalgamated) moment recursions for hyper-connection Jacobians.

A hyper-connected stack with ``n`` streams of width ``C`` and rank-one read/write
(``x ↦ M x + a · F(bᵀ x)``, ``a = H_postᵀ``, ``b = H_preᵀ``) has input–output Jacobian

    J = Π_{l=L}^{1} X_l,      X_l = M_l ⊗ I_C + a_l b_lᵀ ⊗ B_l          (nC × nC)

with ``B_l`` the branch Jacobian. Write ``G = J Jᵀ`` as ``n × n`` blocks ``G_ij`` of size
``C × C`` and ``τ = tr / C``. The recursion tracks the ``M_n``-valued first moment
``Σ_ij = τ(G_ij)`` and the 4-index second moment ``Γ_ijkl = τ(G_ij G_kl)``
(``Σ_0 = I``, ``Γ_0 = δ_ij δ_kl``); then ``m_1 = tr Σ / n`` and
``m_2 = Σ_ij Γ_ijji / n`` are the first two moments of the eigenvalues of ``J Jᵀ``.

One layer, with ``P = M G Mᵀ``, ``q = M G b`` (a column of blocks), ``s = bᵀ G b``:
``G' = P + q Bᵀ aᵀ + a B qᵀ + a aᵀ (B s Bᵀ)``. With ``B`` R-diagonal, free from ``G``
(``τ(B x Bᵀ y) = β_1 τ(x) τ(y)``, ``τ(B x B y) = 0``, and the fourth free cumulant
``α_2 = β_2 - 2 β_1²``):

    Σ'    = M Σ Mᵀ + β_1 τ(s) a aᵀ
    Γ'_ijkl = τ(P_ij P_kl) + β_1 τ(s) (a_k a_l τ(P_ij) + a_i a_j τ(P_kl))
            + β_1 (a_j a_k τ(q_lᵀ q_i) + a_i a_l τ(q_jᵀ q_k))
            + a_i a_j a_k a_l (α_2 τ(s)² + β_1² (τ(s)² + τ(s²)))

Derivation: ``docs/theory.md`` ("Operator-valued moments"). The ``Σ`` recursion is exact in
expectation at every ``C`` (it only uses ``E[B x Bᵀ] = β_1 τ(x) I``); ``Γ`` is the
large-``C`` limit. The mixers ``M_l`` and vectors are arbitrary (any manifold, any
pre/post weights): the recursion conditions on them. JPmHC (arXiv 2602.18308) motivates
the operator-valued treatment; the recursion here is mhckit's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mhckit.theory.arrays import as_layers
from mhckit.theory.branch import Branch
from mhckit.theory.prediction import Prediction

__all__ = ["OperatorMoments", "hyperconnection_moments"]

SOURCE = "docs/theory.md#operator-valued-moments (amalgamation over M_n)"


@dataclass(frozen=True)
class OperatorMoments:
    """``m1``/``m2`` of the eigenvalues of ``JJᵀ`` and the ``n × n`` stream gain ``Σ_L``."""

    m1: Prediction
    m2: Prediction
    stream_gain: np.ndarray


def _branches(branch: Branch | Sequence[Branch], depth: int) -> list[Branch]:
    branches = [branch] * depth if isinstance(branch, Branch) else list(branch)
    if len(branches) != depth or not all(isinstance(b, Branch) for b in branches):
        raise ValueError(f"branch must be a Branch or a sequence of {depth} Branch objects")
    return branches


def _unscaled(value: float, exponent: int, name: str) -> float:
    """``value · 2^exponent``, or ``OverflowError`` naming ``log10`` of it."""
    if value > 0 and np.log2(value) + exponent >= 1024:
        log10 = (np.log2(value) + exponent) * np.log10(2.0)
        raise OverflowError(f"{name} = 10^{log10:.1f} exceeds the float64 range")
    return float(np.ldexp(value, exponent))


def hyperconnection_moments(mixers: object, pre: object, post: object,
                            branch: Branch | Sequence[Branch]) -> OperatorMoments:
    """First two moments of the squared singular values of ``J = Π (M_l ⊗ I + a_l b_lᵀ ⊗ B_l)``.

    ``mixers``: ``(L, n, n)`` (layer 1 first); ``pre`` = ``b`` (``H_pre``), ``post`` = ``a``
    (``H_post``): ``(n,)`` or ``(L, n)``; ``branch``: the law of each ``B_l``. ``m1`` is
    exact in expectation, ``m2`` a large-width limit. ``n = 1``, ``M = a = b = 1`` is the
    ResNet ``Π (I + B_l)`` (Tarnowski et al. 2019, arXiv 1809.08848):
    ``m1 = (1 + β_1)^L``, ``m2 = (1 + β_1)^{2L} + L (2β_1 + β_2 - β_1²)(1 + β_1)^{2L-2}``.
    The recursion is rescaled every layer by a power of two (exact), so it never overflows inside;
    a moment beyond the float64 range (``> 1.8e308``) raises ``OverflowError``.
    """
    m, pre_v, post_v = as_layers(mixers, pre, post)
    depth, n = m.shape[0], m.shape[1]
    sigma = np.eye(n)
    gamma = np.einsum("ij,kl->ijkl", np.eye(n), np.eye(n))
    exponent = 0  # Σ_true = 2^exponent Σ, Γ_true = 4^exponent Γ: exact rescaling, no overflow
    for mix, b, a, br in zip(m, pre_v, post_v, _branches(branch, depth), strict=True):
        beta1, beta2 = br.beta1, br.beta2
        alpha2 = beta2 - 2 * beta1 ** 2
        p_sigma = mix @ sigma @ mix.T
        tau_s = b @ sigma @ b
        tau_s2 = np.einsum("p,q,r,s,pqrs->", b, b, b, b, gamma)
        # τ(P_ij P_kl) = Σ M_ip M_jq M_kr M_ls Γ_pqrs, contracted one index at a time
        t1 = np.einsum("ip,pqrs->iqrs", mix, gamma)
        t1 = np.einsum("jq,iqrs->ijrs", mix, t1)
        t1 = np.einsum("kr,ijrs->ijks", mix, t1)
        t1 = np.einsum("ls,ijks->ijkl", mix, t1)
        # τ(q_lᵀ q_i) with q_i = Σ_pr M_ip b_r G_pr and q_lᵀ = Σ_qs M_lq b_s G_sq
        qq = np.einsum("lq,s,ip,r,sqpr->li", mix, b, mix, b, gamma)
        aa = np.outer(a, a)
        gamma = (t1
                 + beta1 * tau_s * (np.einsum("ij,kl->ijkl", p_sigma, aa)
                                    + np.einsum("ij,kl->ijkl", aa, p_sigma))
                 + beta1 * (np.einsum("j,k,li->ijkl", a, a, qq)
                            + np.einsum("i,l,jk->ijkl", a, a, qq))
                 + np.einsum("ij,kl->ijkl", aa, aa)
                 * (alpha2 * tau_s ** 2 + beta1 ** 2 * (tau_s ** 2 + tau_s2)))
        sigma = p_sigma + beta1 * tau_s * aa
        # the recursion is homogeneous (Σ of degree 1, Γ of degree 2): rescale each layer
        shift = int(np.frexp(np.abs(sigma).max())[1]) if np.abs(sigma).max() > 0 else 0
        sigma, gamma = np.ldexp(sigma, -shift), np.ldexp(gamma, -2 * shift)
        exponent += shift
    m1 = _unscaled(float(np.trace(sigma)) / n, exponent, "m1")
    m2 = _unscaled(float(np.einsum("ijji->", gamma)) / n, 2 * exponent, "m2")
    return OperatorMoments(m1=Prediction(m1, "expectation", SOURCE),
                           m2=Prediction(m2, "limit", SOURCE),
                           stream_gain=np.ldexp(sigma, exponent))
