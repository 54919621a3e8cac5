"""The hyper-connected block ``x_next = H_res·x + H_postᵀ·F(H_pre·x)`` over ``n`` streams."""

from __future__ import annotations

import math
from contextlib import nullcontext

import geoopt
import torch
from torch import nn

from mhckit.functional.rms_norm_linear import rms_norm_linear
from mhckit.functional.stream_mix import stream_mix, stream_write
from mhckit.functional.stream_recompute import Stage, recompute_streams
from mhckit.functional.validation import check_bool, check_float, check_tensor
from mhckit.functional.value_checks import value_checks
from mhckit.manifolds.base import Manifold, check_size
from mhckit.nn.preset import Preset, get_preset
from mhckit.nn.stream_weights import one_hot_target, stream_weights, stream_weights_inverse

__all__ = ["HyperConnection"]

#: ``init=``: mhckit's start (a plain residual at step 0) or the reference code's.
INITS = ("default", "paper")

#: A custom manifold passed as ``mixer`` is used with the mHC maps (sigmoid / 2·sigmoid).
CUSTOM = Preset("custom", "arXiv 2512.24880", "user-supplied manifold with mHC read/write maps",
                None)


class HyperConnection(nn.Module):
    """One hyper-connected residual block on streams ``x`` of shape ``(..., n, C)``::

        x_next = H_res · x + H_postᵀ · F(H_pre · x)          (HC, arXiv 2409.19606)

    with ``H_pre, H_post ∈ R^n`` and ``H_res`` a point of ``mixer``'s manifold acting on the
    stream axis (the ``n x n`` matrix ``manifold.as_matrix(point)``; the read ``H_pre · x``
    and the mix are :func:`~mhckit.functional.stream_mix`, the write
    :func:`~mhckit.functional.stream_mix.stream_write`, each with a lean custom backward). ``F`` is
    ``branch``, a module ``(..., C) -> (..., C)`` (e.g. LayerNorm + attention, so the block is
    pre-norm); with ``branch=None`` ``F`` is the identity.

    **Coefficients** (mHC, arXiv 2512.24880, eqs. (7)-(8)). For each of ``pre``, ``post``,
    ``res``::

        a = b + α · g(W · RMSNorm(vec x))        (dynamic=True, per token)
        a = b                                     (dynamic=False)
        H_pre = f_pre(a_pre), H_post = f_post(a_post), H_res = manifold.parametrize(a_res)

    ``vec x ∈ R^{nC}`` flattens the streams of a token; one fused ``Linear(nC, 2n + P)``
    (``P = sum(manifold.dynamic_groups)``, the per-token entries of ``z``) computes the three
    projections ``W``; ``α`` are learned scalar gates (initial value ``gate_init``, 0.01 as
    in mHC), one for ``pre``, one for ``post`` and one per group of ``manifold.dynamic_groups``
    (sHC gates its two rotations and its singular values apart); ``g`` is the preset's
    ``dynamic_activation``; ``f_pre, f_post`` its maps (sigmoid and 2·sigmoid for mHC, see
    :mod:`mhckit.nn.stream_weights`). The RMSNorm has a learnable scale ``g ∈ R^{nC}``
    (``norm_weight=True``, initially 1, as in every reference code), applied as
    ``W·(g ⊙ x̂) = (W diag g)·x̂``.

    **Per-stream dynamics** (preset ``projection="per-stream"``: ``hc``, arXiv 2409.19606,
    Sec. 2.2). Each stream is normalised on its own, ``x̄_i = RMSNorm(x_i)`` (scale
    ``g ∈ R^C``), and projected by weights shared by all streams, ``W ∈ R^{(n+2)×C}``::

        H_pre_i  = A_m,i  = b_pre,i  + s_α · tanh(x̄_i · W_m)
        H_post_i = B_i    = b_post,i + s_β · tanh(x̄_i · W_β)
        H_res_ji = A_r,ij = b_res,ji + s_α · tanh(x̄_i · W_r,j)

    (``H_res = A_rᵀ``: HC mixes by the transpose), ``C·(n+2)`` weights and the two gates
    ``(s_α, s_β)`` of the paper, ``s_α`` shared by ``A_m`` and ``A_r``.

    **Riemannian mode** (``riemannian=True``): ``H_res`` is one static point held as a
    ``geoopt.ManifoldParameter`` (initialised at ``manifold.origin()``) and moved by a
    Riemannian optimizer; ``H_pre`` and ``H_post`` stay as above.

    **Initialisation** (HC, arXiv 2409.19606, Sec. 2.3): ``W = 0``, so at step 0 the block
    equals its static part exactly, and

    * ``H_res = parametrize(identity_param())``: the identity, or near it (e.g. Sinkhorn of
      finite logits); ``H_res 1 = 1``, so equal streams pass unchanged (``jpmhc-grassmann``,
      whose projector cannot be ``I``, starts on a subspace containing ``1``);
    * ``H_pre`` is one-hot on stream ``layer_index mod n``: exactly for ``identity`` maps,
      ``(1 - (n-1)·0.01)`` there and ``0.01`` elsewhere for sigmoid/softmax maps (the
      biases are the inverse map of that target, ``ONE_HOT_TOLERANCE`` = 0.01, so ``H_pre``
      still sums to 1);
    * ``H_post = 1`` on every stream (HC's ``B = 1_{1×n}``; ``2σ(0) = 1``, ``n·softmax(0) = 1``).

    So on expanded streams (all equal to ``h``) the block returns ``n`` copies of
    ``h + F(h)``: a plain pre-norm residual block. ``mixer="residual"`` is that block with
    no parameters, ``x + F(mean_i x_i)``; with ``n_streams=1`` it is ``x + F(x)``.

    ``init="paper"`` starts where the preset's reference code starts instead
    (:class:`~mhckit.nn.PaperInit`; ``docs/fidelity.md`` lists each): e.g. ``H_pre = σ(±1)``,
    ``H_post = 2σ(±1)`` and permutation logits ``0 / −8`` for mHC-lite and KromHC, ``c = 4``
    for sHC, ``Q = I`` for go-mHC. That block is *not* a plain residual at step 0.

    Args:
        dim: stream width ``C``.
        n_streams: number of streams ``n``.
        mixer: a preset name (:func:`mhckit.nn.presets`), a :class:`~mhckit.nn.Preset` or a
            manifold instance of size ``n_streams`` (used with the mHC maps).
        branch: the sublayer ``F``.
        layer_index: index of this block in the network (picks the stream ``H_pre`` reads).
        dynamic: add the per-token part to the static biases.
        riemannian: hold a static ``H_res`` as a ``ManifoldParameter``.
        gate_init: initial value of the gates ``α``.
        norm_weight: learnable RMSNorm scale before the projection (default, as the
            references); ``False`` drops it (the mhckit <= 0.x block).
        init: ``"default"`` (a plain residual at step 0) or ``"paper"`` (the reference's).
        recompute: ``False``; ``True`` or a group length ``L_r``: the streams inside a
            group and the reads ``H_pre·x`` are not kept for the backward pass but rebuilt
            from the group's input stream with the stored coefficients (mHC, arXiv
            2512.24880, Sec. 4.3; neither the coefficient maps nor the branch are rerun).
            Alone the block is a group of one; a stack
            (:func:`mhckit.functional.recompute_streams` over :meth:`stages`, as
            :class:`mhckit.models.GPT` does) groups ``L_r`` consecutive blocks.
        recompute_maps: with ``recompute``, rerun the coefficient maps in the backward pass
            too instead of keeping what they save (``O(n²)`` per token: the least memory,
            for one more forward of the maps; ``maps=True`` of ``recompute_streams``).
        **options: preset options (e.g. ``s=2`` for ``go-mhc``, ``p`` for ``jpmhc-grassmann``).
    """

    def __init__(self, dim: int, n_streams: int, mixer: str | Preset | Manifold = "mhc",
                 branch: nn.Module | None = None, layer_index: int = 0, dynamic: bool = True,
                 *, riemannian: bool = False, gate_init: float = 0.01, norm_weight: bool = True,
                 init: str = "default", recompute: bool | int = False,
                 recompute_maps: bool = False, **options: object) -> None:
        super().__init__()
        self.dim = check_size(dim, "dim")
        self.n_streams = n = check_size(n_streams, "n_streams")
        self.layer_index = check_size(layer_index, "layer_index", minimum=0)
        self.dynamic = check_bool(dynamic, "dynamic")
        self.riemannian = check_bool(riemannian, "riemannian")
        check_bool(norm_weight, "norm_weight")
        if branch is not None and not callable(branch):
            raise TypeError(f"branch must be a module (or callable) mapping (..., C) -> (..., C) "
                            f"or None, got {type(branch).__name__} {branch!r}")
        self.branch = branch
        gate_init = check_float(gate_init, "gate_init")
        if init not in INITS:
            raise ValueError(f"init must be one of {list(INITS)}, got {init!r}")
        self.init = init
        if not isinstance(recompute, int) or (not isinstance(recompute, bool) and recompute < 1):
            raise ValueError(f"recompute must be a bool or a group length >= 1, got "
                             f"{recompute!r}")
        self.recompute = recompute
        self.recompute_maps = check_bool(recompute_maps, "recompute_maps")
        if recompute_maps and not recompute:
            raise ValueError("recompute_maps=True needs recompute (True or a group length), "
                             "got recompute=False")
        if isinstance(mixer, Manifold):
            if options:
                raise TypeError(f"options {sorted(options)} only apply to a preset name, "
                                f"got a manifold instance {type(mixer).__name__}")
            self.preset, self.manifold = CUSTOM, mixer
        else:
            self.preset = mixer if isinstance(mixer, Preset) else get_preset(mixer)
            self.manifold = self.preset.build(n, paper=init == "paper", **options)
        manifold = self.manifold
        if manifold is None:
            return
        if manifold.n != n:
            raise ValueError(f"mixer must act on n_streams={n} streams, got "
                             f"{type(manifold).__name__} of size {manifold.n}")
        self.per_stream = self.preset.projection == "per-stream"
        if self.per_stream and manifold.param_shape != (n, n):
            raise ValueError(f"a per-stream projection needs n x n logits of H_res, got "
                             f"{type(manifold).__name__} with param_shape "
                             f"{manifold.param_shape}")
        groups = () if self.riemannian else manifold.dynamic_groups
        self.res_groups = groups
        self.res_size = sum(groups)

        paper = init == "paper"
        try:
            pre, post = self._initial_logits(self.layer_index % n, paper)
        except ValueError as err:  # a sigmoid read cannot put weight 1 on a single stream
            raise ValueError(f"n_streams must be >= 2 for mixer {self.preset.name!r} (its "
                             f"{self.preset.pre} H_pre cannot be one-hot), got {n}") from err
        dtype = torch.get_default_dtype()
        self.pre_bias = nn.Parameter(pre.to(dtype))
        self.post_bias = nn.Parameter(post.to(dtype))
        start = self.preset.res_start(manifold, dtype=dtype, paper=paper)
        if self.riemannian:
            point = manifold.parametrize(start).detach().clone()
            self.res = geoopt.ManifoldParameter(point, manifold=manifold)
        else:
            self.res_bias = nn.Parameter(start)
        if self.dynamic:
            # per-stream (HC): C inputs -> [A_m, B, A_r row] per stream; gates (s_α, s_β),
            # s_α shared by A_m and A_r (arXiv 2409.19606, Sec. 2.2). flat (mHC): nC inputs,
            # one gate for H_pre, one for H_post, one per group of the H_res logits.
            width = dim if self.per_stream else n * dim
            outputs = (2 + (n if self.res_size else 0)) if self.per_stream else (
                2 * n + self.res_size)
            self.projection = nn.Linear(width, outputs, bias=False)
            nn.init.zeros_(self.projection.weight)
            # RMSNorm's learnable scale, as every reference has (folded into the projection)
            self.norm_weight = nn.Parameter(torch.ones(width)) if norm_weight else None
            gates = 2 if self.per_stream else 2 + len(groups)
            self.gates = nn.Parameter(torch.full((gates,), float(gate_init)))

    def _initial_logits(self, k: int, paper: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Static logits of ``H_pre`` and ``H_post`` at step 0 (see the class docstring)."""
        n, start = self.n_streams, self.preset.paper_init
        signs = -torch.ones(n, dtype=torch.float64)
        signs[k] = 1.0
        if paper and start.pre_logit is not None:
            pre = start.pre_logit * signs
        else:
            pre = stream_weights_inverse(self.preset.pre, one_hot_target(self.preset.pre, n, k))
        if paper and start.post_logit is not None:
            post = start.post_logit * signs
        else:
            post = stream_weights_inverse(self.preset.post, torch.ones(n, dtype=torch.float64))
        return pre, post

    # -- coefficients ------------------------------------------------------------------
    def coefficients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(H_pre, H_post, point)`` for streams ``x`` of shape ``(..., n, C)``.

        Shapes ``(..., n)``, ``(..., n)``, ``(..., *manifold.shape)`` when dynamic, else
        ``(n,)``, ``(n,)``, ``manifold.shape`` (broadcast over tokens). ``point`` is the
        manifold point; ``manifold.as_matrix(point)`` is ``H_res``.
        """
        n = self.n_streams
        a_pre, a_post = self.pre_bias, self.post_bias
        a_res = None if self.riemannian else self.res_bias.flatten()
        if self.dynamic:
            weight, scale = self.projection.weight, self.norm_weight  # W·(g ⊙ x̂)
            if self.per_stream:  # HC: each stream normalised alone, rows [A_m, B, A_r]
                out = rms_norm_linear(x, weight, eps=1e-6, scale=scale)  # (..., n, 2 + n)
                parts = [out[..., 0], out[..., 1], out[..., 2:].mT.flatten(-2)]
            else:
                # vec(x) (..., n·C), flattened inside: streams expanded from one tensor
                # would flatten into a copy, which the backward would keep
                parts = rms_norm_linear(x, weight, eps=1e-6, scale=scale, dims=2).split(
                    (n, n, self.res_size), dim=-1)
            if self.preset.dynamic_activation == "tanh":
                # tanh after the split: tanh -> split gives a wrong input gradient under
                # torch.compile (inductor, CPU, torch 2.13).
                parts = [torch.tanh(part) for part in parts]
            a_pre = a_pre + self.gates[0] * parts[0]
            a_post = a_post + self.gates[1] * parts[1]
            if a_res is not None:
                a_res = a_res + self._res_dynamic(parts[2])
        h_pre = stream_weights(self.preset.pre, a_pre)
        h_post = stream_weights(self.preset.post, a_post)
        if a_res is None:
            point = self.res
        else:  # in the logits' precision under a bf16 autocast too (Manifold.parametrize)
            point = self.manifold.parametrize(a_res.unflatten(-1, self.manifold.param_shape))
        return h_pre, h_post, point

    def _res_dynamic(self, part: torch.Tensor) -> torch.Tensor:
        """The gated per-token part of the ``H_res`` logits, zero on their static tail."""
        if self.per_stream:
            return self.gates[0] * part
        if len(self.res_groups) == 1:
            gated = self.gates[2] * part
        else:
            gated = torch.cat([gate * piece for gate, piece in zip(
                self.gates[2:], part.split(self.res_groups, dim=-1), strict=True)], dim=-1)
        tail = math.prod(self.manifold.param_shape) - self.res_size
        return nn.functional.pad(gated, (0, tail)) if tail else gated

    def mixer_point(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """The manifold point of ``H_res``: per token for streams ``x`` of a dynamic mixer
        (``(..., *manifold.shape)``), else the static part (``manifold.shape``)."""
        if self.manifold is None:
            raise ValueError("mixer 'residual' has no manifold point; its H_res is I")
        if self.riemannian:
            return self.res
        if x is None or not self.dynamic:
            return self.manifold.parametrize(self.res_bias)
        return self.coefficients(self._check(x))[2]

    def mixing_matrix(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """``H_res`` as an ``n x n`` matrix (``manifold.as_matrix`` of :meth:`mixer_point`;
        the identity for ``residual``)."""
        if self.manifold is None:
            return torch.eye(self.n_streams)
        return self.manifold.as_matrix(self.mixer_point(x))

    # -- forward -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        """``(..., n, C) -> (..., n, C)``; extra arguments go to the branch."""
        if self.recompute and self.manifold is not None:
            return recompute_streams(x, [self.stages(*args, **kwargs)], 1,
                                     maps=self.recompute_maps)
        h, state = self.read(x)
        return self.write(state, self._branch(h, args, kwargs))

    def stages(self, *args: object, **kwargs: object) -> Stage:
        """The block as ``(coefficients, branch)`` for
        :func:`~mhckit.functional.recompute_streams`: ``coefficients(x) -> (H_pre, H_res,
        H_post)`` (:meth:`stream_coefficients`), ``branch(h) -> F(h)``; extra arguments go to
        the branch."""
        if self.manifold is None:
            raise ValueError("mixer 'residual' has no stages to recompute (its block keeps "
                             "only the branch's activations)")
        return self.stream_coefficients, lambda h: self._branch(h, args, kwargs)

    def stream_coefficients(self, x: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(H_pre, H_res, H_post)`` for streams ``x`` ``(..., n, C)`` (checked here): shapes
        ``(..., n)``, ``(..., n, n)`` (the matrix ``manifold.as_matrix`` of the point) and
        ``(..., n)`` in ``x``'s dtype, per token when dynamic."""
        self._check(x)
        # x is checked (one read back); z = b + α·W·x needs no second (none while tracing)
        with nullcontext() if torch.compiler.is_compiling() else value_checks(False):
            h_pre, h_post, point = self.coefficients(x)
        return h_pre, self.manifold.as_matrix(point), h_post.to(x.dtype)

    def read(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The branch input ``H_pre·x`` ``(..., C)`` and the write's state ``(H_res·x,
        H_post)``: one :func:`~mhckit.functional.stream_mix` (it saves only ``x`` and the
        coefficients). ``residual``: the mean of the streams, and ``x``."""
        if self.manifold is None:
            self._check(x)
            return x.mean(dim=-2), (x, None)
        h_pre, h_res, h_post = self.stream_coefficients(x)
        read, mixed = stream_mix(x, h_pre, h_res)
        return read, (mixed, h_post)

    def write(self, state: tuple[torch.Tensor, torch.Tensor | None], out: torch.Tensor
              ) -> torch.Tensor:
        """``x_next = H_res·x + H_postᵀ·F`` from :meth:`read`'s state and ``F`` ``(..., C)``
        (:func:`~mhckit.functional.stream_mix.stream_write`: it saves ``H_post`` and ``F``)."""
        mixed, h_post = state
        if h_post is None:
            return mixed + out.unsqueeze(-2)
        return stream_write(mixed, h_post, out)

    def _branch(self, read, args, kwargs):
        return read if self.branch is None else self.branch(read, *args, **kwargs)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        """Streams ``x``: a real floating tensor ``(..., n, C)``, finite (a value check), of
        the parameters' dtype where the per-token projection needs it (or under autocast)."""
        check_tensor(x, "x", finite=False)
        if x.dim() < 2 or x.shape[-2] != self.n_streams or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (..., n_streams={self.n_streams}, "
                             f"dim={self.dim}), got {tuple(x.shape)}")
        if self.manifold is not None and self.dynamic:
            weight = self.projection.weight
            if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
                raise TypeError(f"x has dtype {x.dtype} but this HyperConnection's parameters "
                                f"are {weight.dtype}: convert one (module.to({x.dtype})) or "
                                "run under torch.autocast")
        return check_tensor(x, "x")

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, n_streams={self.n_streams}, mixer={self.preset.name!r}, "
                f"layer_index={self.layer_index}, dynamic={self.dynamic}, "
                f"riemannian={self.riemannian}, recompute={self.recompute}"
                + (", recompute_maps=True" if self.recompute_maps else ""))
