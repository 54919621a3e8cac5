"""Loss curves from training metrics (a matplotlib ``Figure`` rendered to PNG by Agg, without
pyplot, so no global backend is changed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_loss_curves", "loss_figure"]


def plot_loss_curves(runs: dict[str, list[dict[str, Any]]], path: str | Path,
                     title: str = "Tiny Shakespeare, char tokens") -> Path:
    """:func:`loss_figure` saved as a PNG at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    loss_figure(runs, title).savefig(path, dpi=100, bbox_inches="tight")
    return path


def loss_figure(runs: dict[str, list[dict[str, Any]]], title: str) -> Figure:
    """The training loss (thin line) and validation loss (markers) of every run, each
    labelled, under ``title`` (the dataset and tokenizer).

    ``runs`` maps a label to its metrics records (``{"iter", "loss"}`` for training steps,
    ``{"iter", "val_loss"}`` for evaluations, as :func:`mhckit.models.train` writes them).
    The y-axis spans every plotted loss, those at iteration 0 included.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    shown: list[float] = []
    for i, (label, records) in enumerate(runs.items()):
        color = f"C{i % 10}"
        train = [(r["iter"], r["loss"]) for r in records if "loss" in r]
        val = [(r["iter"], r["val_loss"]) for r in records if "val_loss" in r]
        if train:
            ax.plot(*zip(*train, strict=True), color=color, alpha=0.3, linewidth=0.8,
                    label=f"{label} train")
        if val:
            ax.plot(*zip(*val, strict=True), color=color, marker="o", markersize=3,
                    label=f"{label} val ({val[-1][1]:.3f})")
        shown += [v for _, v in val] + [v for _, v in train]
    finite = [v for v in shown if math.isfinite(v)]
    if finite:
        low, high = min(finite), max(finite)
        margin = 0.05 * (high - low) or 0.1
        ax.set_ylim(low - margin, high + margin)
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if runs:
        ax.legend(fontsize=8)
    return fig
