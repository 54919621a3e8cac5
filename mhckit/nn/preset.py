"""Presets: each hyper-connection paper as a few lines of configuration over shared parts.

A :class:`Preset` names the set ``H_res`` lives on (a manifold factory), the maps that make
``H_pre`` and ``H_post`` (:mod:`mhckit.nn.stream_weights`), the activation on the dynamic
part, and default options. :class:`~mhckit.nn.HyperConnection` does the rest, identically
for every preset.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mhckit import manifolds as M
from mhckit.manifolds.base import Manifold, check_size
from mhckit.nn.stream_weights import check_stream_weights

__all__ = ["Preset", "PaperInit", "PROJECTIONS", "PRESETS", "get_preset"]

#: How the dynamic part reads the streams: ``"flat"`` projects ``RMSNorm(vec x) ∈ R^{nC}``
#: (mHC, arXiv 2512.24880, eq. (7)); ``"per-stream"`` normalises each stream on its own and
#: projects it with weights shared by all streams (HC, arXiv 2409.19606, Sec. 2.2).
PROJECTIONS = ("flat", "per-stream")


@dataclass(frozen=True)
class PaperInit:
    """The initial coefficients of a paper's reference code (``init="paper"``).

    ``pre_logit`` / ``post_logit``: the static logits are ``+v`` on stream ``layer_index mod
    n`` and ``−v`` on the others (``v = 1`` in the mHC, mHC-lite, KromHC and sHC code:
    ``H_pre = σ(±1)``, ``H_post = 2σ(±1)``); ``None`` keeps mhckit's default.
    ``res(manifold)``: the initial ``z`` of ``H_res`` (``None``: the preset's default);
    ``options``: manifold options that set the reference's start (e.g. sHC's
    ``identity_logit=4``; an option the user passes wins). ``source`` names the repository,
    commit and file the values come from.
    """

    source: str = ""
    pre_logit: float | None = None
    post_logit: float | None = None
    res: Callable[[Manifold], torch.Tensor] | None = None
    options: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Preset:
    """A hyper-connection variant: ``H = f(b + α·g(W·RMSNorm(x)))`` for each coefficient.

    * ``manifold(n, **options)`` builds the set of ``H_res`` (``None``: a plain residual,
      ``x + F(mean of streams)``, no parameters);
    * ``pre`` / ``post`` name the maps ``f`` giving ``H_pre`` / ``H_post``
      (:data:`~mhckit.nn.stream_weights.STREAM_WEIGHTS`); ``H_res = manifold.parametrize``;
    * ``dynamic_activation`` is ``g``: ``"identity"`` (mHC and successors) or ``"tanh"``
      (HC, arXiv 2409.19606, eq. (9): ``H = b + α·tanh(W x̄)``);
    * ``options`` are default keyword arguments of ``manifold`` (e.g. ``s`` for go-mHC);
    * ``res_init(manifold)`` gives the initial ``z`` of ``H_res`` (default
      ``manifold.identity_param()``);
    * ``projection`` is :data:`PROJECTIONS`: ``"per-stream"`` for HC, whose dynamic part is
      ``s_α·tanh(norm(x_i)·W)`` per stream ``i`` (``C·(n+2)`` weights), ``"flat"`` for the
      others (``nC·(2n + P)`` weights);
    * ``paper_init`` is what ``init="paper"`` starts from (:class:`PaperInit`).
    """

    name: str
    paper: str
    description: str
    manifold: Callable[..., Manifold] | None
    pre: str = "sigmoid"
    post: str = "2sigmoid"
    dynamic_activation: str = "identity"
    options: tuple[tuple[str, object], ...] = ()
    res_init: Callable[[Manifold], torch.Tensor] | None = None
    projection: str = "flat"
    paper_init: PaperInit = PaperInit()

    def __post_init__(self) -> None:
        if self.projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {list(PROJECTIONS)}, "
                             f"got {self.projection!r}")
        check_stream_weights(self.pre, "pre")
        if self.pre == "n-softmax":
            raise ValueError("pre must read a convex combination of the streams; 'n-softmax' "
                             "sums to n, use 'softmax'")
        check_stream_weights(self.post, "post")
        if self.dynamic_activation not in ("identity", "tanh"):
            raise ValueError("dynamic_activation must be 'identity' or 'tanh', "
                             f"got {self.dynamic_activation!r}")

    def build(self, n_streams: int, *, paper: bool = False, **options: object
              ) -> Manifold | None:
        """The manifold of ``H_res`` for ``n_streams`` streams, with ``options`` overriding
        the defaults (and the reference's start, ``paper_init.options``, with
        ``paper=True``); an unknown option raises ``TypeError`` listing the known ones."""
        check_size(n_streams, "n_streams")
        known = dict(self.options)
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"unknown option(s) {unknown} for preset {self.name!r}; "
                            f"valid options: {sorted(known)}")
        if self.manifold is None:
            return None
        start = dict(self.paper_init.options) if paper else {}
        return self.manifold(n_streams, **{**known, **start, **options})

    def res_start(self, manifold: Manifold, *, dtype: torch.dtype | None = None,
                  paper: bool = False) -> torch.Tensor:
        """The initial unconstrained ``z`` of ``H_res`` on ``manifold`` (the reference code's
        with ``paper=True``, where the preset has one)."""
        start = self.paper_init.res if paper and self.paper_init.res else self.res_init
        if start is None:
            return manifold.identity_param(dtype=dtype)
        return start(manifold).to(dtype or torch.get_default_dtype())


#: The mHC-family reference code starts the permutation (or Sinkhorn) logits at ``0`` on the
#: identity and ``−8`` elsewhere (FFTYYY/mhc-lite, wz1119/KromHC).
REFERENCE_GAP = 8.0


def _gap_logits(manifold: Manifold) -> torch.Tensor:
    """``z`` with logit ``0`` on the identity and ``−8`` elsewhere, factor by factor.

    ``PermutationHull(n)``: ``softmax`` weight ``1/(1 + (n!−1)e^{−8})`` on ``P_1 = I``
    (diagonal 0.99401 at ``n = 4``); ``Kronecker`` of ``PermutationHull(2)``: ``σ(8)`` per
    factor (diagonal ``σ(8)^K``, 0.99933 at ``n = 4``); ``Birkhoff``: Sinkhorn of
    ``8·(I − 11ᵀ)``.
    """
    if isinstance(manifold, M.Kronecker):
        return torch.cat([_gap_logits(f).reshape(-1) for f in manifold.factor_manifolds])
    if isinstance(manifold, M.PermutationHull):
        return M.PermutationHull(manifold.n, identity_gap=REFERENCE_GAP).identity_param(
            dtype=torch.float64)
    if isinstance(manifold, M.Birkhoff):
        eye = torch.eye(manifold.n, dtype=torch.float64)
        return REFERENCE_GAP * (eye - 1.0)
    raise TypeError(f"no reference gap initialisation for {type(manifold).__name__}")


_MHC_CODE = PaperInit("wz1119/KromHC@dd2910c hyper_conn/mhc.py (FFTYYY's vec-x mHC)",
                      1.0, 1.0, _gap_logits)
_MHC_LITE_CODE = PaperInit("wz1119/KromHC@dd2910c hyper_conn/mhc_lite.py (FFTYYY/mhc-lite)",
                           1.0, 1.0, _gap_logits)
_KROMHC_CODE = PaperInit("wz1119/KromHC@dd2910c hyper_conn/Kromhc.py", 1.0, 1.0, _gap_logits)
#: sHC's start ``a = b = 0``, ``c = 4``, ``γ = 1``: diagonal ``¼ + ¾·tanh 4 = 0.999497``.
_SHC_CODE = PaperInit("6zHAOyi/s2HC@80ebd01 litgpt/hyper_conn/shc.py", 1.0, 1.0,
                      options=(("identity_logit", 4.0),))
#: go-mHC's start ``Q = Cayley(0) = I``, ``H = I`` exactly (``init_mixing = 0``); the
#: repository's language-model ``hyper_conn`` package is not published, so ``H_pre``/``H_post``
#: keep mhckit's start.
_GO_MHC_CODE = PaperInit("itstorque/go-mHC@4422d79 toy_models/dynamics.ipynb "
                         "(GeneralizedUnistochastic)", options=(("init_mixing", 0.0),))
_HC_CODE = PaperInit("lucidrains/hyper-connections 0.4.11 hyper_connections.py (arXiv "
                     "2409.19606 Sec. 2.3: one-hot A_m, B = 1, A_r = I, as mhckit's default)")


def _kronecker_of_primes(n: int, *, powers_of_two: bool) -> Manifold:
    return M.Kronecker.of_size(n, powers_of_two=powers_of_two)


def _grassmann(n: int, *, p: int | None) -> Manifold:
    return M.Grassmann(n, n // 2 if p is None else p)


def _orthogonal(n: int) -> Manifold:
    return M.Stiefel(n, n)


def _subspace_through_ones(manifold: Manifold) -> torch.Tensor:
    """``z`` of a Grassmann ``Gr(n, p)`` whose subspace contains ``1``, so ``U Uᵀ 1 = 1``.

    ``z`` holds ``B`` (``(n-p) x p``) and the subspace is that of ``[I; B']`` with ``B'`` the
    double-angle image of ``B`` (``Cayley`` rotates by ``2·arctan σ``); ``B'·1_p = 1_{n-p}``
    for the rank-one ``B' = 1 1ᵀ / p``, singular value ``σ' = √((n-p)/p)``, hence
    ``B = tan(arctan(σ')/2) · 1 1ᵀ / √((n-p)p)``.
    """
    n, p = manifold.n, manifold.p
    if p == n:
        return torch.zeros(0, dtype=torch.float64)
    sigma = math.tan(math.atan(math.sqrt((n - p) / p)) / 2)
    return torch.full(((n - p) * p,), sigma / math.sqrt((n - p) * p), dtype=torch.float64)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("residual", "arXiv 1512.03385", "plain residual x + F(x); one stream is a ResNet",
           None),
    Preset("hc", "arXiv 2409.19606",
           "Hyper-Connections: unconstrained H_res, per-stream tanh dynamics (Sec. 2.2)",
           M.Unconstrained, pre="identity", post="identity", dynamic_activation="tanh",
           projection="per-stream", paper_init=_HC_CODE),
    Preset("mhc", "arXiv 2512.24880",
           "doubly stochastic H_res by Sinkhorn (20 iterations, or tol; the residual it "
           "reached is reported, see Birkhoff)", M.Birkhoff,
           options=(("max_iter", 20), ("tol", 1e-6)), paper_init=_MHC_CODE),
    Preset("mhc-lite", "arXiv 2601.05732",
           "doubly stochastic H_res as a convex combination of permutations",
           M.PermutationHull, paper_init=_MHC_LITE_CODE),
    Preset("kromhc", "arXiv 2601.21579",
           "Kronecker product of 2x2 doubly stochastic factors (n a power of 2; "
           "powers_of_two=False: one PermutationHull(p) per prime factor p of n)",
           _kronecker_of_primes, options=(("powers_of_two", True),),
           paper_init=_KROMHC_CODE),
    Preset("go-mhc", "arXiv 2604.02309",
           "generalized orthostochastic H_res from a Cayley-parametrized orthogonal matrix",
           M.Orthostochastic, options=(("s", 2), ("init_mixing", 0.05)),
           paper_init=_GO_MHC_CODE),
    Preset("jpmhc", "arXiv 2602.18308", "orthogonal H_res (Stiefel, Cayley), softmax read/write",
           _orthogonal, pre="softmax", post="n-softmax"),
    Preset("jpmhc-grassmann", "arXiv 2602.18308",
           "projector U Uᵀ onto a p-dim subspace (Grassmann, p = n // 2 by default)",
           _grassmann, pre="softmax", post="n-softmax", options=(("p", None),),
           res_init=_subspace_through_ones),
    Preset("shc", "arXiv 2603.20896",
           "H_res on the spectral sphere (negative entries allowed), rotation generators "
           "γ·tanh(·) as in the sHC code", M.SpectralSphere,
           options=(("generators", "tanh"), ("identity_logit", 3.0)), paper_init=_SHC_CODE),
)}


def get_preset(name: object) -> Preset:
    """The preset called ``name`` (``ValueError`` listing the valid names otherwise)."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown mixer preset {name!r}; valid presets: {sorted(PRESETS)}")
    return PRESETS[name]
