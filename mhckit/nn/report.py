"""Diagnostics of the mixers of a model: composite gain over depth, constraint error, and
distance from the identity."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mhckit.nn.hyper_connection import HyperConnection

__all__ = ["MixerReport", "Diagnostics", "diagnostics", "amax_gains", "hyper_connection_inputs"]


def amax_gains(matrix: torch.Tensor) -> tuple[float, float]:
    """``(forward, backward)`` "Amax gain magnitude" of a ``(n, n)`` mixer (mHC, arXiv
    2512.24880, Sec. 3.1): the largest absolute row sum ``max_i Σ_j |H_ij|`` (the most a
    signal can grow, ``‖H‖_∞``) and the largest absolute column sum ``max_j Σ_i |H_ij|``
    (the most a gradient can grow, ``‖H‖_1``). Both are 1 for doubly stochastic ``H``."""
    a = matrix.abs()
    return float(a.sum(-1).max()), float(a.sum(-2).max())


@dataclass(frozen=True)
class MixerReport:
    """One hyper-connection: its ``H_res`` matrix ``(n, n)`` and the numbers derived from it.

    ``constraint_error`` is the manifold's largest violation (over tokens, when a batch was
    given); ``identity_distance`` is ``‖H_res - I‖_F`` (sHC, arXiv 2603.20896, calls a
    mixer that stays near zero here "identity degeneration"); ``forward_gain`` and
    ``backward_gain`` are :func:`amax_gains` of ``H_res``.
    """

    name: str
    mixer: str
    matrix: torch.Tensor
    constraint_error: float
    identity_distance: float
    forward_gain: float
    backward_gain: float


@dataclass(frozen=True)
class Diagnostics:
    """The mixers of a model in depth order and their composite ``Π H_res = H_L ··· H_1``.

    ``forward_gain`` / ``backward_gain`` are the Amax gains of the composite (about 3000 for
    HC and 1.6 for mHC in the mHC paper's 27B model, Fig. 3/7).
    """

    composite: torch.Tensor
    forward_gain: float
    backward_gain: float
    mixers: tuple[MixerReport, ...]

    def __str__(self) -> str:
        lines = [f"{'mixer':<28} {'preset':<16} {'constraint':>10} {'|H-I|_F':>8} "
                 f"{'fwd gain':>9} {'bwd gain':>9}"]
        for m in self.mixers:
            lines.append(f"{m.name:<28} {m.mixer:<16} {m.constraint_error:>10.2e} "
                         f"{m.identity_distance:>8.4f} {m.forward_gain:>9.4f} "
                         f"{m.backward_gain:>9.4f}")
        lines.append(f"composite over {len(self.mixers)} mixers: forward gain "
                     f"{self.forward_gain:.4g}, backward gain {self.backward_gain:.4g}")
        return "\n".join(lines)


@torch.no_grad()
def diagnostics(model: nn.Module, x: object = None) -> Diagnostics:
    """Report every :class:`~mhckit.nn.HyperConnection` in ``model`` (in ``model.modules()``
    order, which is depth order for a sequential model).

    Without ``x`` each ``H_res`` is the mixer's static part (its bias through
    ``parametrize``, or the Riemannian parameter); the per-token dynamic part, zero at
    initialisation, is left out. With ``x``, ``model(x)`` runs once and each dynamic mixer is
    evaluated on the streams that reach it: ``H_res`` is the mean over tokens of the
    per-token matrices, and ``constraint_error`` the largest over tokens. The composite is
    the product of those (token-mean) matrices.
    """
    blocks, inputs = hyper_connection_inputs(model, x)
    reports, composite = [], None
    for i, (name, block) in enumerate(blocks):
        report = _report(name, block, inputs.get(i))
        composite = report.matrix if composite is None else report.matrix @ composite
        reports.append(report)
    forward, backward = amax_gains(composite)
    return Diagnostics(composite, forward, backward, tuple(reports))


def hyper_connection_inputs(model: nn.Module, x: object = None
                            ) -> tuple[list[tuple[str, HyperConnection]], dict[int, torch.Tensor]]:
    """The :class:`~mhckit.nn.HyperConnection` blocks of ``model`` as ``(name, block)`` in
    ``model.modules()`` order, and, when ``x`` is given, the streams that reached block ``i``
    in one ``model(x)`` (``{i: (..., n, C)}``; the first call of a block, detached)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    blocks = [(name or type(m).__name__, m) for name, m in model.named_modules()
              if isinstance(m, HyperConnection)]
    if not blocks:
        raise ValueError("model must contain at least one HyperConnection, got none")
    inputs: dict[int, torch.Tensor] = {}
    if x is not None:
        handles = [m.register_forward_pre_hook(
            lambda mod, args, _i=i: inputs.setdefault(_i, args[0].detach()))
            for i, (_, m) in enumerate(blocks)]
        try:
            model(x)
        finally:
            for h in handles:
                h.remove()
    return blocks, inputs


def _report(name: str, block: HyperConnection, streams: torch.Tensor | None) -> MixerReport:
    manifold, n = block.manifold, block.n_streams
    if manifold is None:
        matrix, error = block.mixing_matrix(), 0.0
    else:
        point = block.mixer_point(streams)
        error = float(manifold.constraint_error(point).max())
        matrix = manifold.as_matrix(point).reshape(-1, n, n).mean(0)
    matrix = matrix.detach().to(torch.float64).cpu()
    distance = float(torch.linalg.matrix_norm(matrix - torch.eye(n, dtype=matrix.dtype)))
    forward, backward = amax_gains(matrix)
    return MixerReport(name, block.preset.name, matrix, error, distance, forward, backward)
