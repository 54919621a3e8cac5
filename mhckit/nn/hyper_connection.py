"""The hyper-connected block ``x_next = H_res·x + H_postᵀ·F(H_pre·x)`` over ``n`` streams."""

from __future__ import annotations

import math

import geoopt
import torch
from torch import nn

from mhckit.functional.rms_norm_linear import rms_norm_linear
from mhckit.manifolds.base import Manifold, check_size
from mhckit.nn.preset import Preset, get_preset
from mhckit.nn.stream_weights import one_hot_target, stream_weights, stream_weights_inverse

__all__ = ["HyperConnection"]

#: A custom manifold passed as ``mixer`` is used with the mHC maps (sigmoid / 2·sigmoid).
CUSTOM = Preset("custom", "arXiv 2512.24880", "user-supplied manifold with mHC read/write maps",
                None)


class HyperConnection(nn.Module):
    """One hyper-connected residual block on streams ``x`` of shape ``(..., n, C)``::

        x_next = H_res · x + H_postᵀ · F(H_pre · x)          (HC, arXiv 2409.19606)

    with ``H_pre, H_post ∈ R^n`` and ``H_res`` a point of ``mixer``'s manifold acting on the
    stream axis (the ``n x n`` matrix ``manifold.as_matrix(point)``; the read ``H_pre · x``
    and the mix are one batched matmul by ``[H_pre; H_res]``). ``F`` is
    ``branch``, a module ``(..., C) -> (..., C)`` (e.g. LayerNorm + attention, so the block is
    pre-norm); with ``branch=None`` ``F`` is the identity.

    **Coefficients** (mHC, arXiv 2512.24880, eqs. (7)-(8)). For each of ``pre``, ``post``,
    ``res``::

        a = b + α · g(W · RMSNorm(vec x))        (dynamic=True, per token)
        a = b                                     (dynamic=False)
        H_pre = f_pre(a_pre), H_post = f_post(a_post), H_res = manifold.parametrize(a_res)

    ``vec x ∈ R^{nC}`` flattens the streams of a token; one fused ``Linear(nC, 2n + P)``
    (``P = prod(manifold.param_shape)``) computes the three projections ``W``; ``α`` are three
    learned scalar gates (initial value ``gate_init``, 0.01 as in mHC); ``g`` is the preset's
    ``dynamic_activation`` (``tanh`` for HC); ``f_pre, f_post`` its maps (sigmoid and
    2·sigmoid for mHC, see :mod:`mhckit.nn.stream_weights`).

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
        **options: preset options (e.g. ``s=2`` for ``go-mhc``, ``p`` for ``jpmhc-grassmann``).
    """

    def __init__(self, dim: int, n_streams: int, mixer: str | Preset | Manifold = "mhc",
                 branch: nn.Module | None = None, layer_index: int = 0, dynamic: bool = True,
                 *, riemannian: bool = False, gate_init: float = 0.01, **options: object) -> None:
        super().__init__()
        self.dim = check_size(dim, "dim")
        self.n_streams = n = check_size(n_streams, "n_streams")
        self.layer_index = check_size(layer_index, "layer_index", minimum=0)
        self.dynamic = bool(dynamic)
        self.riemannian = bool(riemannian)
        self.branch = branch
        if isinstance(gate_init, bool) or not isinstance(gate_init, (int, float)):
            raise TypeError(f"gate_init must be a float, got {type(gate_init).__name__}")
        if isinstance(mixer, Manifold):
            if options:
                raise TypeError(f"options {sorted(options)} only apply to a preset name, "
                                f"got a manifold instance {type(mixer).__name__}")
            self.preset, self.manifold = CUSTOM, mixer
        else:
            self.preset = mixer if isinstance(mixer, Preset) else get_preset(mixer)
            self.manifold = self.preset.build(n, **options)
        manifold = self.manifold
        if manifold is None:
            return
        if manifold.n != n:
            raise ValueError(f"mixer must act on n_streams={n} streams, got "
                             f"{type(manifold).__name__} of size {manifold.n}")
        self.res_size = 0 if self.riemannian else math.prod(manifold.param_shape)

        k = self.layer_index % n
        pre = stream_weights_inverse(self.preset.pre, one_hot_target(self.preset.pre, n, k))
        post = stream_weights_inverse(self.preset.post, torch.ones(n, dtype=torch.float64))
        dtype = torch.get_default_dtype()
        self.pre_bias = nn.Parameter(pre.to(dtype))
        self.post_bias = nn.Parameter(post.to(dtype))
        start = self.preset.res_start(manifold, dtype=dtype)
        if self.riemannian:
            point = manifold.parametrize(start).detach().clone()
            self.res = geoopt.ManifoldParameter(point, manifold=manifold)
        else:
            self.res_bias = nn.Parameter(start)
        if self.dynamic:
            self.projection = nn.Linear(n * dim, 2 * n + self.res_size, bias=False)
            nn.init.zeros_(self.projection.weight)
            self.gates = nn.Parameter(torch.full((3 if self.res_size else 2,), float(gate_init)))

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
            flat = x.flatten(-2)  # vec(x): (..., n·C)
            parts = rms_norm_linear(flat, self.projection.weight, eps=1e-6).split(
                (n, n, self.res_size), dim=-1)
            if self.preset.dynamic_activation == "tanh":
                # tanh after the split: tanh -> split gives a wrong input gradient under
                # torch.compile (inductor, CPU, torch 2.13).
                parts = [torch.tanh(part) for part in parts]
            a_pre = a_pre + self.gates[0] * parts[0]
            a_post = a_post + self.gates[1] * parts[1]
            if a_res is not None:
                a_res = a_res + self.gates[2] * parts[2]
        h_pre = stream_weights(self.preset.pre, a_pre)
        h_post = stream_weights(self.preset.post, a_post)
        if a_res is None:
            point = self.res
        else:
            point = self.manifold.parametrize(a_res.unflatten(-1, self.manifold.param_shape))
        return h_pre, h_post, point

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
        self._check(x)
        if self.manifold is None:
            read = x.mean(dim=-2)
            return x + self._branch(read, args, kwargs).unsqueeze(-2)
        h_pre, h_post, point = self.coefficients(x)
        h_res = self.manifold.as_matrix(point).to(x.dtype)
        # read and mix in one batched matmul: [H_pre; H_res] · x, shape (..., 1 + n, C)
        n, batch = self.n_streams, torch.broadcast_shapes(h_pre.shape[:-1], h_res.shape[:-2])
        coupled = torch.cat([h_pre.to(x.dtype).unsqueeze(-2).expand(*batch, 1, n),
                             h_res.expand(*batch, n, n)], dim=-2)
        read, mixed = (coupled @ x).split((1, n), dim=-2)
        out = self._branch(read.squeeze(-2), args, kwargs)
        return torch.addcmul(mixed, h_post.to(x.dtype).unsqueeze(-1), out.unsqueeze(-2))

    def _branch(self, read, args, kwargs):
        return read if self.branch is None else self.branch(read, *args, **kwargs)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2 or x.shape[-2] != self.n_streams or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (..., n_streams={self.n_streams}, "
                             f"dim={self.dim}), got {tuple(x.shape)}")
        return x

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, n_streams={self.n_streams}, mixer={self.preset.name!r}, "
                f"layer_index={self.layer_index}, dynamic={self.dynamic}, "
                f"riemannian={self.riemannian}")
