"""A nanoGPT-shaped causal transformer whose residual stream is any mixer.

Attention, MLP, LayerNorm, weight tying and initialisation are nanoGPT's
(github.com/karpathy/nanoGPT, ``model.py``), so ``mixer="residual"`` is nanoGPT. The one
change: every sublayer is a hyper-connection (Zhu et al., arXiv:2409.19606; mHC,
arXiv:2512.24880) over ``n`` residual streams,

    x_next = H_res · x + H_postᵀ · F(H_pre · x),      x: (B, T, n, C),

with ``F`` = LayerNorm + attention or LayerNorm + MLP and ``H_res`` on the set the mixer
names (:func:`mhckit.nn.presets`, or any manifold instance). The token embedding is expanded
to ``n`` streams before the first block and reduced to one before the final LayerNorm.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

from mhckit.functional.stream_recompute import optimal_group_size, recompute_streams
from mhckit.functional.validation import check_bool, check_float, check_size
from mhckit.functional.value_checks import value_checks_enabled
from mhckit.manifolds.base import Manifold
from mhckit.nn import HyperConnection, expand_streams, get_preset, reduce_streams
from mhckit.nn.hyper_connection import INITS

__all__ = ["GPTConfig", "GPT", "CausalSelfAttention", "MLP", "Block", "EXECUTION_FIELDS"]

#: :class:`GPTConfig` fields that choose how the model is computed, not what it computes (the
#: parameters, the outputs and the gradients are the same either way): a run may change them
#: on resume, and they are not part of its identity.
EXECUTION_FIELDS = frozenset({"recompute", "recompute_maps"})


@dataclass
class GPTConfig:
    """Model shape. Defaults are nanoGPT's Shakespeare-character CPU configuration
    (``n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0, bias=False``)."""

    block_size: int = 64
    vocab_size: int = 65
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False  # biases in Linears and LayerNorms, as nanoGPT's option
    mixer: Any = "residual"  # a preset name (mhckit.nn.presets()) or a manifold instance
    n_streams: int = 4  # residual streams n; "residual" always uses one, i.e. is nanoGPT
    dynamic: bool = True  # per-token H_pre/H_post/H_res (mHC) or static ones
    mixer_options: dict[str, Any] = field(default_factory=dict)  # more HyperConnection kwargs
    # recompute the stream mixing in the backward pass (mHC Sec. 4.3): False, True (groups of
    # optimal_group_size(n, 2·n_layer) sublayers) or a group length L_r in sublayers
    recompute: bool | int = False
    # with recompute: rerun the coefficient maps too instead of keeping their O(n²) per token
    recompute_maps: bool = False
    # "default": a plain residual at step 0; "paper": the preset's reference code's start
    init: str = "default"

    def __post_init__(self) -> None:
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "n_streams"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_embd must be divisible by n_head ({self.n_head}), "
                             f"got {self.n_embd}")
        check_float(self.dropout, "GPTConfig.dropout", low=0.0, high=1.0, high_open=True)
        check_bool(self.bias, "GPTConfig.bias")
        check_bool(self.dynamic, "GPTConfig.dynamic")
        if isinstance(self.mixer, str):
            get_preset(self.mixer)
        elif not isinstance(self.mixer, Manifold):
            raise TypeError(f"GPTConfig.mixer must be a preset name or a manifold instance, got "
                            f"{type(self.mixer).__name__}")
        if not isinstance(self.recompute, int) or (
                not isinstance(self.recompute, bool) and self.recompute < 1):
            raise ValueError(f"GPTConfig.recompute must be a bool or a group length >= 1, got "
                             f"{self.recompute!r}")
        check_bool(self.recompute_maps, "GPTConfig.recompute_maps")
        if self.recompute_maps and not self.recompute:
            raise ValueError("GPTConfig.recompute_maps=True needs recompute (True or a group "
                             "length), got recompute=False")
        if self.init not in INITS:
            raise ValueError(f"GPTConfig.init must be one of {list(INITS)}, got {self.init!r}")
        if not isinstance(self.mixer_options, dict):
            raise TypeError(f"GPTConfig.mixer_options must be a dict, got "
                            f"{type(self.mixer_options).__name__}")

    @property
    def recompute_group(self) -> int:
        """Sublayers per recompute group ``L_r`` (0: no recompute, as for ``"residual"``,
        whose blocks have nothing to recompute)."""
        if not self.recompute or self.mixer == "residual":
            return 0
        if self.recompute is True:
            return optimal_group_size(self.streams, 2 * self.n_layer)
        return self.recompute

    @property
    def streams(self) -> int:
        """Streams the model carries: ``n_streams``, or 1 for ``"residual"`` (a one-stream
        hyper-connection with the residual preset is exactly ``x + F(x)``)."""
        return 1 if self.mixer == "residual" else self.n_streams


def _init_weights(module: nn.Module) -> None:
    """nanoGPT's initialisation: N(0, 0.02) weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.dropout = config.n_head, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=-1)
        # (B, T, C) -> (B, n_head, T, head_size)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


# connection(branch, layer_index) -> module mapping streams (B, T, n, C) -> (B, T, n, C)
Connection = Callable[[nn.Module, int], nn.Module]


def hyper_connection(config: GPTConfig) -> Connection:
    """The default connection: :class:`mhckit.nn.HyperConnection` with the config's mixer."""

    def connect(branch: nn.Module, layer_index: int) -> nn.Module:
        return HyperConnection(config.n_embd, config.streams, config.mixer, branch=branch,
                               layer_index=layer_index, dynamic=config.dynamic,
                               recompute=config.recompute,
                               recompute_maps=config.recompute_maps, init=config.init,
                               **config.mixer_options)

    return connect


class Block(nn.Module):
    """Pre-norm transformer block: a hyper-connection around LayerNorm + attention, then one
    around LayerNorm + MLP. ``layer_index`` counts sublayers (``2·index`` and ``2·index + 1``).
    """

    def __init__(self, config: GPTConfig, index: int, connection: Connection) -> None:
        super().__init__()
        branches = []
        for layer in (CausalSelfAttention(config), MLP(config)):
            layer.apply(_init_weights)
            # nanoGPT: scaled init of the projections into the residual stream, GPT-2 paper
            nn.init.normal_(layer.c_proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
            ln = nn.LayerNorm(config.n_embd, bias=config.bias)
            branches.append(nn.Sequential(OrderedDict(ln=ln, layer=layer)))
        self.attn = connection(branches[0], 2 * index)
        self.mlp = connection(branches[1], 2 * index + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, n, C)
        return self.mlp(self.attn(x))


class GPT(nn.Module):
    """nanoGPT with hyper-connected sublayers; ``forward(idx, targets)`` -> ``(logits, loss)``.

    ``connection`` replaces the hyper-connection module (``(branch, layer_index) -> module``
    on streams ``(B, T, n, C)``), e.g. to run another library's implementation in the same
    model; by default it is :class:`mhckit.nn.HyperConnection` with ``config.mixer``.

    With ``config.recompute`` the ``2·n_layer`` sublayers run as one stack through
    :func:`mhckit.functional.recompute_streams`, in groups of ``config.recompute_group``
    (in grad mode only; the hyper-connection modules' own forward hooks do not run there).
    """

    def __init__(self, config: GPTConfig, connection: Connection | None = None) -> None:
        super().__init__()
        self.config = config
        connection = connection or hyper_connection(config)
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config, i, connection) for i in range(config.n_layer)),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying (nanoGPT, GPT-2)
        self.transformer.wte.apply(_init_weights)
        self.transformer.wpe.apply(_init_weights)
        if config.recompute_group and not all(
                isinstance(block.attn, HyperConnection) and isinstance(block.mlp, HyperConnection)
                for block in self.transformer.h):
            raise ValueError("GPTConfig.recompute needs the default connection "
                             "(mhckit.nn.HyperConnection), got a custom connection")

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count; as nanoGPT, position embeddings are left out by default (token
        embeddings count once, being tied to the output layer)."""
        total = sum(p.numel() for p in self.parameters())
        return total - self.transformer.wpe.weight.numel() if non_embedding else total

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``idx``, ``targets``: ``(B, T)`` token ids. Returns logits ``(B, T, vocab)`` and the
        mean cross-entropy with targets, or the last position's logits ``(B, 1, vocab)``
        and ``None`` without them (generation)."""
        B, T = self._check_tokens(idx, "idx").shape
        if targets is not None:
            self._check_tokens(targets, "targets", ignore=-1)
            if targets.shape != idx.shape:
                raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got "
                                 f"{tuple(targets.shape)}")
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        x = expand_streams(x, self.config.streams)  # (B, T, C) -> (B, T, n, C)
        if self.config.recompute_group and torch.is_grad_enabled():  # else: nothing to save
            stages = [hc.stages() for block in self.transformer.h for hc in (block.attn, block.mlp)]
            x = recompute_streams(x, stages, self.config.recompute_group,
                                  maps=self.config.recompute_maps)
        else:
            for block in self.transformer.h:
                x = block(x)
        x = self.transformer.ln_f(reduce_streams(x))  # (B, T, n, C) -> (B, T, C)
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    def _check_tokens(self, idx: object, name: str, *, ignore: int | None = None,
                      block: bool = True) -> torch.Tensor:
        """``idx``: integer token ids ``(B, T)``, ``1 <= T`` (``<= block_size`` for ``block``),
        each in ``[0, vocab_size)`` (or ``ignore``; a value check, see ``value_checks``)."""
        if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.long, torch.int):
            got = idx.dtype if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise TypeError(f"{name} must be an int64 (or int32) tensor of token ids, got {got}")
        if idx.dim() != 2 or idx.shape[1] == 0:
            raise ValueError(f"{name} must have shape (B, T) with T >= 1, got {tuple(idx.shape)}")
        if block and idx.shape[1] > self.config.block_size:
            raise ValueError(f"{name} must have at most block_size={self.config.block_size} "
                             f"positions, got {idx.shape[1]}")
        if idx.numel() and value_checks_enabled():
            valid = idx if ignore is None else idx[idx != ignore]
            low, high = (int(v) for v in torch.aminmax(valid)) if valid.numel() else (0, 0)
            if low < 0 or high >= self.config.vocab_size:
                raise ValueError(f"{name} must hold token ids in [0, vocab_size="
                                 f"{self.config.vocab_size}), got ids in [{low}, {high}]")
        return idx

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        """Append ``max_new_tokens`` sampled tokens to ``idx`` ``(B, T)``; the context is
        cropped to the last ``block_size`` tokens. ``generator`` makes sampling reproducible
        without touching the global RNG."""
        self._check_tokens(idx, "idx", block=False)
        check_size(max_new_tokens, "max_new_tokens", minimum=0)
        check_float(temperature, "temperature", low=0.0, low_open=True)
        if top_k is not None:
            check_size(top_k, "top_k")
        for _ in range(max_new_tokens):
            context = idx[:, -self.config.block_size:]
            logits, _ = self(context)
            logits = logits[:, -1, :].float() / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("inf")
            probs = F.softmax(logits, dim=-1)
            next_token = torch.multinomial(probs, num_samples=1, generator=generator)
            idx = torch.cat((idx, next_token), dim=1)
        return idx
