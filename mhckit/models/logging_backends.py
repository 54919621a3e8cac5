"""Copies of the training metrics for TensorBoard and Weights & Biases.

``metrics.jsonl`` stays the record of a run (resume reads it, plots are drawn from it); a
backend receives every record written there and shows its numbers as scalars. A scalar's tag
is its key path in the record: ``loss``, ``lr``, ``ms``, ``tokens_per_s`` per training
iteration, ``train_loss``, ``val_loss`` per evaluation, ``diagnostics/constraint_error``,
``diagnostics/composite_gain_forward``, ... for the mixer diagnostics (nested numbers; lists
and missing values are left out), all at step ``iter``. Samples go to TensorBoard as text.

* TensorBoard: ``torch.utils.tensorboard.SummaryWriter`` (the ``tensorboard`` package, extra
  ``mhckit[tensorboard]``) into ``OUT/tensorboard``; on resume from iteration ``k`` the
  writer purges the events at steps ``>= k`` that a killed run left, as the JSONL is cut;
* W&B: ``wandb.init(project=..., dir=OUT)`` in offline mode unless ``WANDB_MODE`` says
  otherwise (``wandb sync`` uploads later; no network is needed to train).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

__all__ = ["MetricsBackend", "TensorBoardBackend", "WandbBackend", "scalars", "open_backends",
           "TENSORBOARD_DIR"]

TENSORBOARD_DIR = "tensorboard"


def scalars(record: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """``(tag, value)`` for every finite number in ``record`` but ``iter``, nested dicts
    flattened with ``/``."""
    for key, value in record.items():
        if key == "iter" and not prefix:
            continue
        if isinstance(value, dict):
            yield from scalars(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
                value):
            yield f"{prefix}{key}", float(value)


class MetricsBackend(Protocol):
    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class TensorBoardBackend:
    """Scalars (and samples as text) into a TensorBoard event file in ``log_dir``."""

    def __init__(self, log_dir: str | Path, *, purge_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ModuleNotFoundError:
            raise ValueError("tensorboard logging needs the tensorboard package: pip install "
                             "'mhckit[tensorboard]' (or pip install tensorboard)") from None
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def write(self, record: dict[str, Any]) -> None:
        step = record["iter"]
        for tag, value in scalars(record):
            self.writer.add_scalar(tag, value, step)
        if "sample" in record:
            self.writer.add_text("sample", record["sample"], step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbBackend:
    """Scalars into a Weights & Biases run of ``project`` (offline unless ``WANDB_MODE``)."""

    def __init__(self, project: str, out_dir: str | Path, config: dict[str, Any]) -> None:
        try:
            import wandb
        except ModuleNotFoundError:
            raise ValueError("wandb logging needs the wandb package: pip install wandb") from None
        self.run = wandb.init(project=project, dir=str(out_dir), config=config,
                              mode=os.environ.get("WANDB_MODE", "offline"))

    def write(self, record: dict[str, Any]) -> None:
        values = dict(scalars(record))
        if values:
            self.run.log(values, step=record["iter"])

    def close(self) -> None:
        self.run.finish()


def open_backends(out_dir: Path, *, tensorboard: bool, wandb_project: str, start: int,
                  config: dict[str, Any]) -> list[MetricsBackend]:
    """The backends a :class:`~mhckit.models.TrainConfig` asks for; ``start`` is the first
    iteration this process trains (``> 0`` on resume)."""
    backends: list[MetricsBackend] = []
    if tensorboard:
        backends.append(TensorBoardBackend(out_dir / TENSORBOARD_DIR,
                                           purge_step=start if start else None))
    if wandb_project:
        backends.append(WandbBackend(wandb_project, out_dir, config))
    return backends
