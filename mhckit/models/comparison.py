"""Train one GPT per mixer with the same seed, data order and budget, and compare them."""

from __future__ import annotations

import dataclasses
import inspect
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mhckit.models.checkpoint import CHECKPOINT_NAME
from mhckit.models.config import TrainConfig
from mhckit.models.data import BatchSampler, TextData
from mhckit.models.gpt import GPT, GPTConfig
from mhckit.models.nonfinite import NonFiniteError
from mhckit.models.plotting import plot_loss_curves
from mhckit.models.training import METRICS_NAME, TrainResult, read_metrics, train
from mhckit.nn import HyperConnection, diagnostics, get_preset

__all__ = ["MixerResult", "compare_mixers", "options_for", "format_table", "COMPARISON_PLOT"]

COMPARISON_PLOT = "loss_curves.png"


@dataclass(frozen=True)
class MixerResult:
    """One row of the comparison.

    ``step_time`` is the median seconds per training iteration; ``composite_gain`` the
    forward Amax gain of ``Π H_res`` over all sublayers and ``constraint_error`` the largest
    violation of any mixer's set, both on one validation sequence
    (:func:`mhckit.nn.diagnostics`); ``1.0`` and ``0.0`` for ``residual``. A mixer whose
    training went non-finite has ``diverged`` (the :class:`NonFiniteError` message), ``run``
    ``None``, NaN in the measured columns, and its ``metrics`` up to the last good step.
    """

    mixer: str
    val_loss: float
    parameters: int
    step_time: float
    composite_gain: float
    constraint_error: float
    run: TrainResult | None
    diverged: str | None = None
    metrics: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _diagnose(model: GPT, train_config: TrainConfig) -> tuple[float, float]:
    data = TextData.load(train_config.dataset)
    x, _ = BatchSampler(data.val, model.config.block_size, 1, seed=train_config.seed).sample(
        next(model.parameters()).device)
    try:
        report = diagnostics(model, x)
    except ValueError:  # no mhckit HyperConnection in the model (a custom connection)
        return math.nan, math.nan
    return report.forward_gain, max(m.constraint_error for m in report.mixers)


def _step_time(run: TrainResult) -> float:
    """The median step time of this process, or of the logged iterations when it trained none
    (a run already complete when the comparison resumed)."""
    if math.isfinite(run.step_time):
        return run.step_time
    logged = [r["ms"] / 1000 for r in run.metrics if "ms" in r]
    return statistics.median(logged) if logged else math.nan


def options_for(mixer: str, options: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``options`` (a config's ``mixer_options``) that ``mixer`` accepts: the
    keyword options of every :class:`~mhckit.nn.HyperConnection` (``riemannian``,
    ``gate_init``, ...) and the preset's own (``s`` for ``go-mhc``), so one configuration
    compares ``residual`` and ``go-mhc`` with ``s = 2``."""
    common = {name for name, p in inspect.signature(HyperConnection).parameters.items()
              if p.kind is inspect.Parameter.KEYWORD_ONLY}
    accepted = common | set(dict(get_preset(mixer).options))
    return {key: value for key, value in options.items() if key in accepted}


def compare_mixers(mixers: Sequence[str], model_config: GPTConfig, train_config: TrainConfig,
                   out_dir: str | Path, *, progress: bool = True,
                   resume: bool = False, overwrite: bool = False) -> list[MixerResult]:
    """Train ``model_config`` with each mixer (and the ``mixer_options`` it accepts,
    :func:`options_for`) into ``out_dir/<mixer>`` and plot every loss curve into
    ``out_dir/loss_curves.png``. With ``resume``, a mixer whose run directory
    holds a checkpoint continues from it (exactly, :func:`~mhckit.models.train`): an
    interrupted comparison finishes what it had not done (a mixer interrupted before its
    first checkpoint starts again). With ``overwrite``, runs already in ``out_dir`` are
    replaced; without either, a mixer directory holding a run is refused
    (:class:`~mhckit.models.run_directory.RunDirectoryError`). A mixer that diverges
    (:class:`~mhckit.models.nonfinite.NonFiniteError`, its last good checkpoint kept) is
    reported in its row and the comparison goes on with the next one."""
    out_dir = Path(out_dir)
    results = []
    for mixer in mixers:
        checkpoint = out_dir / mixer / CHECKPOINT_NAME
        config = dataclasses.replace(model_config, mixer=mixer,
                                     mixer_options=options_for(mixer, model_config.mixer_options))
        resumable = resume and checkpoint.is_file()
        try:
            run = train(config, train_config, out_dir / mixer, progress=progress,
                        resume=checkpoint if resumable else None,
                        overwrite=overwrite or (resume and not resumable))
        except NonFiniteError as err:
            results.append(MixerResult(
                mixer, math.nan, GPT(config).num_parameters(), math.nan, math.nan, math.nan,
                None, diverged=str(err), metrics=read_metrics(out_dir / mixer / METRICS_NAME)))
            continue
        gain, error = _diagnose(run.model, train_config)
        results.append(MixerResult(mixer, run.val_loss, run.model.num_parameters(),
                                   _step_time(run), gain, error, run, metrics=run.metrics))
    title = TextData.load(train_config.dataset).title
    plot_loss_curves({r.mixer: r.metrics for r in results}, out_dir / COMPARISON_PLOT,
                     title=f"{title}, {train_config.max_iters} iterations per mixer")
    return results


def format_table(results: Sequence[MixerResult]) -> str:
    """A fixed-width table; the step-time ratio is to ``residual`` when it was trained."""
    base = next((r.step_time for r in results if r.mixer == "residual"), math.nan)
    lines = [f"{'mixer':<16} {'val loss':>8} {'params':>9} {'step ms':>8} {'x residual':>10} "
             f"{'gain':>8} {'constraint':>10}"]
    for r in results:
        if r.diverged is not None:
            where = r.diverged.split(";")[0]  # "iteration N: non-finite loss nan ..."
            lines.append(f"{r.mixer:<16} {'diverged':>8} {r.parameters:>9,}  at {where}")
            continue
        ratio = r.step_time / base if base == base else math.nan
        lines.append(f"{r.mixer:<16} {r.val_loss:>8.4f} {r.parameters:>9,} "
                     f"{1000 * r.step_time:>8.1f} {ratio:>10.2f} {r.composite_gain:>8.3f} "
                     f"{r.constraint_error:>10.1e}")
    return "\n".join(lines)

