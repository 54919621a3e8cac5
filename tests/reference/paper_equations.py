"""Independent transcriptions of each paper's equations, for the conformance tests.

Written from the papers and from reading the public reference code for its formulas (not
its code); each function names the source. Everything is plain ``torch`` on explicit
tensors, in the *reference's* layout and conventions, so a test has to map mhckit's
parameters onto them (which is what makes it a conformance test, not a self-test):

* the references mix the streams by the transpose of the matrix they build,
  ``x'_t = Σ_s H_st x_s``; mhckit's ``H_res`` is that transpose;
* their RMSNorm is ``F.normalize(v)·√d·(1 + γ)``, i.e. ``v / rms(v) · (1 + γ)``
  (lucidrains/hyper-connections ``RMSNorm``, copied by every later repository);
* their static logits and dynamic weights are separate tensors with separate learned
  scales ("gates").

Sources (repository @ commit, file):

* HC, arXiv 2409.19606 Sec. 2.2, and lucidrains/hyper-connections 0.4.11
  ``hyper_connections/hyper_connections.py`` (``HyperConnections``);
* mHC as rewritten on ``vec x`` by FFTYYY, wz1119/KromHC @ dd2910c ``hyper_conn/mhc.py``;
* mHC-lite, FFTYYY/mhc-lite ``hyper_conn/mhc_lite.py`` (the copy in wz1119/KromHC @ dd2910c
  ``hyper_conn/mhc_lite.py``);
* KromHC, wz1119/KromHC @ dd2910c ``hyper_conn/Kromhc.py``;
* go-mHC, itstorque/go-mHC @ 4422d79 ``toy_models/dynamics.ipynb``
  (``GeneralizedUnistochastic``);
* sHC, 6zHAOyi/s2HC @ 80ebd01 ``litgpt/hyper_conn/shc.py``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

REFERENCES = {
    "hc": "lucidrains/hyper-connections 0.4.11 hyper_connections/hyper_connections.py",
    "mhc": "wz1119/KromHC@dd2910c4c7004c73ef892d5aeb6d887d0dd9c8fd hyper_conn/mhc.py",
    "mhc-lite": "wz1119/KromHC@dd2910c4c7004c73ef892d5aeb6d887d0dd9c8fd hyper_conn/mhc_lite.py",
    "kromhc": "wz1119/KromHC@dd2910c4c7004c73ef892d5aeb6d887d0dd9c8fd hyper_conn/Kromhc.py",
    "go-mhc": "itstorque/go-mHC@4422d79 toy_models/dynamics.ipynb",
    "shc": "6zHAOyi/s2HC@80ebd01766623b58b3aa121350af73725a6d1a73 litgpt/hyper_conn/shc.py",
}


def rms_normalize(v: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``v / rms(v) · (1 + γ)`` over the last axis (no epsilon, as the references)."""
    return v / v.square().mean(-1, keepdim=True).sqrt() * (1.0 + gamma)


# -- H_res maps, in the reference's orientation ------------------------------------------------
def sinkhorn_reference(logits: torch.Tensor, iters: int) -> torch.Tensor:
    """mHC code: ``iters`` rounds of log-domain normalisation, columns first, then rows."""
    for _ in range(iters):
        logits = logits - logits.logsumexp(-2, keepdim=True)
        logits = logits - logits.logsumexp(-1, keepdim=True)
    return logits.exp()


def permutation_matrices(n: int, dtype=torch.float64) -> torch.Tensor:
    """All ``n × n`` permutation matrices, ``itertools.permutations`` order, ``P[i, π(i)] = 1``."""
    eye = torch.eye(n, dtype=dtype)
    return torch.stack([eye[list(p)] for p in itertools.permutations(range(n))])


def mhc_lite_reference(logits: torch.Tensor, n: int) -> torch.Tensor:
    """mHC-lite (arXiv 2601.05732): ``H = Σ_k softmax(logits)_k P_k`` over the ``n!``
    permutations."""
    perms = permutation_matrices(n, dtype=logits.dtype)
    return torch.einsum("...k,kij->...ij", logits.softmax(-1), perms)


def kromhc_reference(logits: torch.Tensor) -> torch.Tensor:
    """KromHC (arXiv 2601.21579): ``H = U_1 ⊗ … ⊗ U_K``, ``U_k = [[p, 1−p], [1−p, p]]`` with
    ``p = softmax(logits_k)_0`` for each consecutive pair of logits."""
    pairs = logits.unflatten(-1, (-1, 2)).softmax(-1)[..., 0]
    result = None
    for k in range(pairs.shape[-1]):
        p = pairs[..., k]
        factor = torch.stack([torch.stack([p, 1 - p], -1), torch.stack([1 - p, p], -1)], -2)
        if result is None:
            result = factor
        else:
            big = result[..., :, None, :, None] * factor[..., None, :, None, :]
            result = big.reshape(*big.shape[:-4], big.shape[-4] * 2, big.shape[-2] * 2)
    return result


def go_mhc_reference(raw: torch.Tensor, n: int, s: int) -> torch.Tensor:
    """go-mHC (arXiv 2604.02309): ``X = R − Rᵀ``, ``U = (I − X)⁻¹(I + X)``, and
    ``H_ij = ‖U_(i,j)‖_F² / s`` over the ``s × s`` blocks of ``U``."""
    x = raw - raw.mT
    eye = torch.eye(n * s, dtype=raw.dtype)
    u = torch.linalg.solve(eye - x, eye + x)
    blocks = u.reshape(*u.shape[:-2], n, s, n, s)
    return blocks.square().sum((-3, -1)) / s


def helmert_reference(n: int, dtype=torch.float64) -> torch.Tensor:
    """sHC's ``U_z`` (``n × (n−1)``): column ``i−1`` is ``1/√(i(i+1))`` on the first ``i`` rows
    and ``−i/√(i(i+1))`` on row ``i``."""
    u = torch.zeros(n, n - 1, dtype=dtype)
    for i in range(1, n):
        value = 1.0 / math.sqrt(i * (i + 1))
        u[:i, i - 1] = value
        u[i, i - 1] = -i * value
    return u


def _skew_from_upper(values: torch.Tensor, m: int) -> torch.Tensor:
    rows, cols = torch.triu_indices(m, m, offset=1)
    a = values.new_zeros(*values.shape[:-1], m, m)
    a[..., rows, cols] = values
    return a - a.mT


def shc_reference(z_u: torch.Tensor, z_v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """sHC (arXiv 2603.20896, code): ``H = J + U_z U Σ Vᵀ U_zᵀ`` with ``U = (I + A_U)⁻¹(I − A_U)``,
    ``V`` likewise, ``A`` the skew matrices of the upper triangles ``z_u, z_v`` and
    ``Σ = diag(σ)``."""
    m = sigma.shape[-1]
    n = m + 1
    eye = torch.eye(m, dtype=sigma.dtype)
    a_u, a_v = _skew_from_upper(z_u, m), _skew_from_upper(z_v, m)
    u = torch.linalg.solve(eye + a_u, eye - a_u)
    v = torch.linalg.solve(eye + a_v, eye - a_v)
    basis = helmert_reference(n, sigma.dtype)
    return torch.full((n, n), 1.0 / n, dtype=sigma.dtype) + basis @ (
        u @ (sigma.unsqueeze(-1) * v.mT)) @ basis.mT


# -- blocks ------------------------------------------------------------------------------------
@dataclass
class HCParameters:
    """HC, arXiv 2409.19606 Sec. 2.2 / lucidrains ``HyperConnections`` (``tanh=True``)::

        H̄ = norm(H)                       per stream, scale (1 + γ) ∈ R^C
        A_m = s_α ∘ tanh(H̄ W_m) + A_m      W_m ∈ R^{C×1}
        A_r = s_α ∘ tanh(H̄ W_r) + A_r      W_r ∈ R^{C×n}
        B   = s_β ∘ tanh(H̄ W_β)ᵀ + B       W_β ∈ R^{C×1}
        h_0 = A_mᵀ H,  H' = A_rᵀ H,  Ĥ = Bᵀ T(h_0) + H'
    """

    gamma: torch.Tensor        # (C,)
    static_alpha: torch.Tensor  # (n, 1 + n): [A_m | A_r]
    dynamic_alpha: torch.Tensor  # (C, 1 + n): [W_m | W_r]
    alpha_scale: torch.Tensor   # ()
    static_beta: torch.Tensor   # (n,)
    dynamic_beta: torch.Tensor  # (C,)
    beta_scale: torch.Tensor    # ()


def hc_block(x: torch.Tensor, p: HCParameters, branch: Callable) -> torch.Tensor:
    """One HC sublayer on streams ``x`` ``(..., n, C)`` (the equations of :class:`HCParameters`)."""
    normed = rms_normalize(x, p.gamma)
    alpha = p.static_alpha + p.alpha_scale * torch.tanh(normed @ p.dynamic_alpha)  # (..., n, 1+n)
    beta = p.static_beta + p.beta_scale * torch.tanh(normed @ p.dynamic_beta)      # (..., n)
    mixed = torch.einsum("...st,...sd->...td", alpha, x)
    h0, h_res = mixed[..., 0, :], mixed[..., 1:, :]
    return beta.unsqueeze(-1) * branch(h0).unsqueeze(-2) + h_res


@dataclass
class FlatParameters:
    """The mHC-family code's block on ``vec x`` (FFTYYY's mHC, mHC-lite, KromHC, sHC)::

        x̄ = RMSNorm(vec x)·(1 + γ)                             γ ∈ R^{nC}
        H_pre  = σ(s_pre · x̄ W_pre + b_pre)                    (n,)
        H_post = 2σ(s_post · x̄ W_post + b_post)                (n,)
        H      = res_map(scales ⊙ (x̄ W_res) + b_res)           (n, n), mixing by Hᵀ
        x'_t = Σ_s H_st x_s + H_post,t · F(Σ_s H_pre,s x_s)

    ``res_scales`` is one scale per logit (the reference's shared or per-part scales
    broadcast to the logits).
    """

    gamma: torch.Tensor
    w_pre: torch.Tensor
    w_post: torch.Tensor
    w_res: torch.Tensor
    b_pre: torch.Tensor
    b_post: torch.Tensor
    b_res: torch.Tensor
    s_pre: torch.Tensor
    s_post: torch.Tensor
    res_scales: torch.Tensor
    res_map: Callable[[torch.Tensor], torch.Tensor] = field(repr=False, default=None)


def flat_block(x: torch.Tensor, p: FlatParameters, branch: Callable) -> torch.Tensor:
    """One sublayer of the mHC-family reference code (equations of :class:`FlatParameters`)."""
    normed = rms_normalize(x.flatten(-2), p.gamma)
    h_pre = torch.sigmoid(p.s_pre * (normed @ p.w_pre) + p.b_pre)
    h_post = 2 * torch.sigmoid(p.s_post * (normed @ p.w_post) + p.b_post)
    h = p.res_map(p.res_scales * (normed @ p.w_res) + p.b_res)
    read = torch.einsum("...s,...sd->...d", h_pre, x)
    mixed = torch.einsum("...st,...sd->...td", h, x)
    return mixed + h_post.unsqueeze(-1) * branch(read).unsqueeze(-2)


# -- parameter counts of the reference modules (per sublayer, branch excluded) --------------------
def reference_parameter_count(preset: str, n: int, c: int) -> int:
    """Learned parameters of one reference hyper-connection of ``n`` streams of width ``c``.

    * HC (lucidrains): ``γ`` C, static ``α`` ``n(1+n)``, dynamic ``α`` ``C(1+n)``, static
      ``β`` n, dynamic ``β`` C, two scales;
    * mHC (FFTYYY): ``γ`` nC, static ``n + n²``, dynamic ``nC(n + n²)`` and ``nC·n``,
      static ``β`` n, three scales;
    * mHC-lite: as mHC with ``n!`` permutation logits in place of ``n²``;
    * KromHC: as mHC with ``2·log₂ n`` factor logits;
    * sHC: ``γ`` nC, pre ``nC·n + n``, residual ``nC(n−1)² + (n−1)²``, post ``nC·n + n``,
      five scales (pre, post, U, V, Σ) and ``γ_u, γ_v``.
    """
    if preset == "hc":
        return c + n * (1 + n) + c * (1 + n) + n + c + 2
    if preset == "shc":
        m = (n - 1) ** 2
        return n * c + (n * c * n + n) + (n * c * m + m) + (n * c * n + n) + 5 + 2
    res = {"mhc": n * n, "mhc-lite": math.factorial(n),
           "kromhc": 2 * int(round(math.log2(n)))}[preset]
    return n * c + (n + res) * (n * c + 1) + n * c * n + n + 3
