"""The papers' analyses of trained models, for one or several training runs.

For each run directory (``metrics.jsonl`` + ``ckpt.pt`` from :func:`mhckit.models.train`):

* the mixer diagnostics logged at every evaluation (:func:`mhckit.nn.token_diagnostics`):
  composite forward/backward Amax gain (mHC, arXiv 2512.24880, Fig. 3) and identity distance
  per layer (sHC, arXiv 2603.20896) against the training step;
* the mean ``H_res`` of every layer at the end (heat maps);
* the singular values of the residual-stream Jacobian ``∂x_L/∂x_0`` of the last position
  (:func:`mhckit.nn.jacobian.gpt_stream_jacobian`, float64) of the trained model and of the
  same model at initialisation (rebuilt from the run's seed), with the theory's exact bound at
  initialisation, ``σ_{C+1}(J) ≤ Π_l σ₂(H_res,l)`` (:func:`mhckit.theory.collapse_bound`),
  where its assumptions hold (unit-marginal mixers, uniform ``H_post``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mhckit.models.checkpoint import CHECKPOINT_NAME, load_model
from mhckit.models.gpt import GPT
from mhckit.nn.hyper_connection import HyperConnection
from mhckit.nn.jacobian import gpt_stream_jacobian, stack_coefficients

__all__ = ["RunAnalysis", "analyze_run", "plot_analysis", "format_analysis"]

METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class RunAnalysis:
    """One run: its label and mixer, the evaluation records (``iter``, losses, diagnostics),
    and the stream-Jacobian singular values (descending) trained and at initialisation.
    ``init_bound`` is the collapse bound at initialisation, ``None`` where it does not apply;
    ``width`` is ``C`` (``σ_{C+1}`` is the first value the bound controls)."""

    label: str
    mixer: str
    steps: tuple[int, ...]
    val_loss: float | None
    diagnostics: tuple[dict[str, Any], ...]  # one per evaluation, in step order
    trained_singular_values: np.ndarray
    init_singular_values: np.ndarray
    init_bound: float | None
    width: int


def analyze_run(run: str | Path, *, tokens: int = 8, seed: int = 0) -> RunAnalysis:
    """Read ``run`` (a run directory) and measure its Jacobians on ``tokens`` token ids
    drawn uniformly from the vocabulary with ``seed``."""
    from mhckit.models.training import read_metrics

    run = Path(run)
    if not run.is_dir():
        raise ValueError(f"run must be a run directory (holding {CHECKPOINT_NAME} and "
                         f"{METRICS_FILE}), got {str(run)!r}")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"tokens must be a positive int, got {tokens!r}")
    records = read_metrics(run / METRICS_FILE)
    evaluations = [r for r in records if "diagnostics" in r]
    if not evaluations:
        raise ValueError(f"run {str(run)!r} has no mixer diagnostics in {METRICS_FILE} "
                         "(trained by an mhckit older than the diagnostics log?)")
    losses = [r["val_loss"] for r in records if "val_loss" in r]
    model, _, state = load_model(run / CHECKPOINT_NAME)
    config = state["model_config"]
    tokens = min(tokens, config.block_size)
    idx = torch.randint(0, config.vocab_size, (tokens,),
                        generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(int(state["config"]["train"]["seed"]))
    init = GPT(config).eval()
    return RunAnalysis(
        label=run.name, mixer=str(config.mixer), steps=tuple(r["iter"] for r in evaluations),
        val_loss=losses[-1] if losses else None,
        diagnostics=tuple(r["diagnostics"] for r in evaluations),
        trained_singular_values=_singular_values(model, idx),
        init_singular_values=_singular_values(init, idx),
        init_bound=_collapse_bound(init), width=config.n_embd)


def _singular_values(model: GPT, idx: torch.Tensor) -> np.ndarray:
    model = model.double()
    return torch.linalg.svdvals(gpt_stream_jacobian(model, idx)).numpy()


def _collapse_bound(model: GPT) -> float | None:
    from mhckit.theory import collapse_bound

    blocks = [m for m in model.modules() if isinstance(m, HyperConnection)]
    if any(b.manifold is None for b in blocks):
        return None
    with torch.no_grad():
        mixers, _, post = stack_coefficients(blocks)
    try:
        return collapse_bound(mixers, post).value
    except ValueError:  # not unit-marginal (hc) or H_post not uniform
        return None


def format_analysis(runs: list[RunAnalysis]) -> str:
    """A table of the final numbers of each run."""
    head = (f"{'run':<14} {'mixer':<16} {'step':>6} {'val loss':>8} {'fwd gain':>9} "
            f"{'bwd gain':>9} {'max fwd':>9} {'|H-I| mean':>10} {'|H-I| max':>9} "
            f"{'constraint':>10} {'spread':>8} {'σ1':>8} {'σC+1/σ1':>8} {'init σC+1/σ1':>12}")
    lines = [head]
    for r in runs:
        d = r.diagnostics[-1]
        loss = "-" if r.val_loss is None else f"{r.val_loss:.4f}"
        lines.append(
            f"{r.label:<14} {r.mixer:<16} {r.steps[-1]:>6} {loss:>8} "
            f"{_num(d['composite_gain_forward']):>9} {_num(d['composite_gain_backward']):>9} "
            f"{_num(d['composite_gain_forward_max']):>9} "
            f"{_num(d['identity_distance_mean']):>10} {_num(d['identity_distance_max']):>9} "
            f"{_num(d['constraint_error'], '.1e'):>10} {_num(d['h_res_spread_mean']):>8} "
            f"{_num(r.trained_singular_values[0]):>8} "
            f"{_num(_collapse_ratio(r.trained_singular_values, r.width)):>8} "
            f"{_num(_collapse_ratio(r.init_singular_values, r.width)):>12}")
    return "\n".join(lines)


def _collapse_ratio(sigma: np.ndarray, width: int) -> float:
    return float(sigma[width] / sigma[0]) if len(sigma) > width else math.nan


def _num(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def plot_analysis(runs: list[RunAnalysis], path: str | Path) -> Path:
    """One PNG: composite gains vs step (log scale), identity distance per layer vs step,
    the Jacobian spectra, and one row of ``H_res`` heat maps (mean over the evaluation
    batch, last evaluation) per run."""
    from matplotlib.figure import Figure

    if not runs:
        raise ValueError("runs must hold at least one RunAnalysis, got none")
    layers = max(len(r.diagnostics[-1]["identity_distance"]) for r in runs)
    fig = Figure(figsize=(max(15, 1.6 * layers), 4.5 + 1.7 * len(runs)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[4.5, 1.7 * len(runs)])
    gain_ax, distance_ax, spectrum_ax = top.subplots(1, 3)
    for i, r in enumerate(runs):
        color = f"C{i % 10}"
        steps = list(r.steps)
        for key, style, what in (("composite_gain_forward", "-", "fwd"),
                                 ("composite_gain_backward", "--", "bwd")):
            gain_ax.plot(steps, [_nan(d[key]) for d in r.diagnostics], style, color=color,
                         marker="o", markersize=3, label=f"{r.label} {what}")
        per_layer = np.array([[_nan(v) for v in d["identity_distance"]] for d in r.diagnostics])
        for layer in range(per_layer.shape[1]):
            distance_ax.plot(steps, per_layer[:, layer], color=color,
                             alpha=0.25 + 0.75 * (layer + 1) / per_layer.shape[1],
                             linewidth=1, label=r.label if layer == per_layer.shape[1] - 1
                             else None)
        ranks = np.arange(1, len(r.trained_singular_values) + 1)
        spectrum_ax.semilogy(ranks, r.trained_singular_values, color=color,
                             label=f"{r.label} trained")
        spectrum_ax.semilogy(ranks, r.init_singular_values, ":", color=color,
                             label=f"{r.label} init")
        if r.init_bound is not None:  # one legend entry for the bound, in each run's colour
            first = all(q.init_bound is None for q in runs[:i])
            spectrum_ax.hlines(max(r.init_bound, 1e-16), r.width + 1, ranks[-1], colors=color,
                               linestyles="-.", linewidth=1,
                               label="theory at init: σ_(C+1..) ≤ Π σ₂(H_res)" if first else None)
    gain_ax.set(yscale="log", xlabel="iteration", ylabel="Amax gain of Π H_res",
                title="composite gain (token mean)")
    distance_ax.set(xlabel="iteration", ylabel="‖H̄_res − I‖_F",
                    title="identity distance per layer (darker = deeper)")
    spectrum_ax.set(xlabel="rank", ylabel="singular value",
                    title="stream Jacobian ∂x_L/∂x_0 (last position)")
    for ax in (gain_ax, distance_ax, spectrum_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    rows = bottom.subplots(len(runs), layers, squeeze=False)
    for r, row in zip(runs, rows, strict=True):
        means = r.diagnostics[-1]["h_res_mean"]
        for layer, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if layer >= len(means):
                ax.set_axis_off()
                continue
            matrix = np.array([[_nan(v) for v in row_] for row_ in means[layer]])
            ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
            ax.set_title(f"{r.label} L{layer}", fontsize=7)
    bottom.suptitle(f"mean H_res per layer at the last evaluation (colour: −1 … 1; "
                    f"step {', '.join(str(r.steps[-1]) for r in runs)})", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)
