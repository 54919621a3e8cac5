"""Per-token diagnostics of a model's mixers on a batch: what the papers measure on trained
models, cheap enough to log at every evaluation.

For the blocks ``l = 1..L`` of a model and the tokens ``t`` of a batch, with ``H_l(t)`` the
``n x n`` ``H_res`` that block ``l`` applies to token ``t`` (its static part for a static
mixer):

* **composite Amax gain** (mHC, arXiv 2512.24880, Sec. 3.1 and Fig. 3): the largest absolute
  row sum (forward, ``‖·‖_∞``) and column sum (backward, ``‖·‖_1``) of the token's composite
  ``C(t) = H_L(t) ··· H_1(t)``, averaged over tokens and their maximum over the batch;
* **identity distance** (sHC, arXiv 2603.20896, "identity degeneration"):
  ``‖H̄_l − I‖_F`` of each layer's token mean ``H̄_l``, and its mean and max over layers;
* **constraint error**: the manifold's largest violation over layers and tokens;
* **spread** of a dynamic mixer over tokens: ``(mean_t ‖H_l(t) − H̄_l‖_F²)^{1/2}`` per layer.

The per-layer identity distance and constraint error equal those of
:func:`mhckit.nn.diagnostics` on the same batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mhckit.nn.report import hyper_connection_inputs

__all__ = ["TokenDiagnostics", "token_diagnostics"]


@dataclass(frozen=True)
class TokenDiagnostics:
    """The numbers of the module docstring; per-layer tuples are in depth order."""

    composite_gain_forward: float  # token mean
    composite_gain_forward_max: float
    composite_gain_backward: float
    composite_gain_backward_max: float
    identity_distance: tuple[float, ...]
    constraint_error: float
    h_res_spread: tuple[float, ...]
    h_res_mean: tuple[tuple[tuple[float, ...], ...], ...]  # (L, n, n) token means

    def as_record(self) -> dict[str, object]:
        """A JSON-ready dict: every field, plus the mean and max of the identity distance
        and the mean spread over layers (non-finite numbers as ``None``)."""
        record = {
            "composite_gain_forward": self.composite_gain_forward,
            "composite_gain_forward_max": self.composite_gain_forward_max,
            "composite_gain_backward": self.composite_gain_backward,
            "composite_gain_backward_max": self.composite_gain_backward_max,
            "identity_distance_mean": sum(self.identity_distance) / len(self.identity_distance),
            "identity_distance_max": max(self.identity_distance),
            "constraint_error": self.constraint_error,
            "h_res_spread_mean": sum(self.h_res_spread) / len(self.h_res_spread),
            "identity_distance": list(self.identity_distance),
            "h_res_spread": list(self.h_res_spread),
            "h_res_mean": [[list(row) for row in m] for m in self.h_res_mean],
        }
        return _finite_or_none(record)


@torch.no_grad()
def token_diagnostics(model: nn.Module, x: object) -> TokenDiagnostics:
    """Run ``model(x)`` once and measure every :class:`~mhckit.nn.HyperConnection` on the
    streams that reach it (see the module docstring). ``x`` is the model's input (e.g. token
    ids ``(B, T)`` for :class:`mhckit.models.GPT`)."""
    blocks, inputs = hyper_connection_inputs(model, x)
    matrices, errors = [], []
    for i, (_, block) in enumerate(blocks):
        n = block.n_streams
        if block.manifold is None:
            matrix = torch.eye(n, dtype=torch.float64)[None]
            errors.append(0.0)
        else:
            point = block.mixer_point(inputs.get(i))
            errors.append(float(block.manifold.constraint_error(point).max()))
            matrix = block.manifold.as_matrix(point).reshape(-1, n, n)
        matrices.append(matrix.detach().to(torch.float64).cpu())
    composite = matrices[0]
    for matrix in matrices[1:]:
        composite = matrix @ composite  # (tokens or 1, n, n), broadcast over tokens
    absolute = composite.abs()
    forward, backward = absolute.sum(-1).amax(-1), absolute.sum(-2).amax(-1)
    means = [m.mean(0) for m in matrices]
    eye = torch.eye(means[0].shape[-1], dtype=torch.float64)
    distance = tuple(float(torch.linalg.matrix_norm(m - eye)) for m in means)
    spread = tuple(float((m - mean).square().sum((-2, -1)).mean().sqrt())
                   for m, mean in zip(matrices, means, strict=True))
    return TokenDiagnostics(
        composite_gain_forward=float(forward.mean()), composite_gain_forward_max=float(
            forward.max()), composite_gain_backward=float(backward.mean()),
        composite_gain_backward_max=float(backward.max()), identity_distance=distance,
        constraint_error=max(errors), h_res_spread=spread,
        h_res_mean=tuple(tuple(tuple(float(v) for v in row) for row in m) for m in means))


def _finite_or_none(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    return value
