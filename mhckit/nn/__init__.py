"""Hyper-connected blocks: ``x_next = H_res·x + H_postᵀ·F(H_pre·x)`` on ``(..., n, C)`` streams.

* :class:`HyperConnection` -- the block, for any preset or manifold;
* :func:`expand_streams`, :func:`reduce_streams`, :class:`StreamReduce` -- widen and read out;
* :func:`presets`, :class:`Preset`, :class:`PaperInit` -- the papers as configuration;
* :func:`diagnostics` -- composite gain over depth, constraint error, identity distance;
* :func:`token_diagnostics` -- the same per token of a batch (logged during training).
"""

from mhckit.nn.catalog import PresetInfo, presets
from mhckit.nn.hyper_connection import HyperConnection
from mhckit.nn.preset import PRESETS, PaperInit, Preset, get_preset
from mhckit.nn.report import Diagnostics, MixerReport, amax_gains, diagnostics
from mhckit.nn.streams import StreamReduce, expand_streams, reduce_streams
from mhckit.nn.token_diagnostics import TokenDiagnostics, token_diagnostics

__all__ = ["HyperConnection", "Preset", "PaperInit", "PresetInfo", "PRESETS", "get_preset",
           "presets",
           "expand_streams", "reduce_streams", "StreamReduce",
           "diagnostics", "Diagnostics", "MixerReport", "amax_gains",
           "token_diagnostics", "TokenDiagnostics"]
