"""The catalogue of presets with their parameter counts (:func:`presets`)."""

from __future__ import annotations

from dataclasses import dataclass

from mhckit.nn.hyper_connection import HyperConnection
from mhckit.nn.preset import PRESETS, Preset

__all__ = ["PresetInfo", "presets"]


@dataclass(frozen=True)
class PresetInfo:
    """One row of :func:`presets`: a preset and its parameter counts at ``(n_streams, dim)``.

    ``mixer_parameters`` is the per-token projection onto ``H_res`` (the manifold's
    ``num_parameters(dim)``: ``n·dim`` inputs for each per-token entry of its ``z``; for the
    per-stream ``hc``, ``W_r ∈ R^{dim×n}``, shared by the streams);
    ``block_parameters`` counts every parameter of a dynamic
    :class:`~mhckit.nn.HyperConnection` except its branch.
    """

    preset: Preset
    n_streams: int
    dim: int
    manifold: str
    mixer_parameters: int
    block_parameters: int


def presets(n_streams: int = 4, dim: int = 768) -> dict[str, PresetInfo]:
    """Every preset by name, with its parameter counts for ``n_streams`` streams of width
    ``dim`` (a preset whose manifold rejects ``n_streams``, e.g. ``kromhc`` for ``n=3``,
    is left out)."""
    rows = {}
    for name, preset in PRESETS.items():
        try:
            block = HyperConnection(dim, n_streams, name)
        except ValueError:
            continue
        manifold = block.manifold
        rows[name] = PresetInfo(
            preset=preset, n_streams=n_streams, dim=dim,
            manifold="-" if manifold is None else repr(manifold),
            mixer_parameters=(0 if manifold is None else dim * n_streams if block.per_stream
                              else manifold.num_parameters(dim)),
            block_parameters=sum(p.numel() for p in block.parameters()))
    return rows
