"""Non-finite training steps: detected on the device, read where training already reads.

A step is *non-finite* when its loss (the mean over its micro-batches) or its gradient norm
``‖g‖₂`` (over every parameter, after the data-parallel all-reduce) is NaN or ±inf.
:meth:`NonFiniteGuard.observe` records this with a few scalar kernels on the device and
transfers nothing; the flag travels to the host with the loss that training reads anyway.
Two policies (``TrainConfig.on_nonfinite``):

* ``"stop"`` (default): no read of its own. The first non-finite step (its iteration, loss
  and gradient norm) is kept on the device and read with the next logged loss, and before
  every evaluation and checkpoint, where :class:`NonFiniteError` ends the run. Nothing is
  written after a non-finite step, so the last checkpoint is the last good state.
* ``"skip"``: the update of a non-finite step is skipped, as ``torch.amp.GradScaler`` skips
  the step of an optimizer that cannot skip on the device: the decision reads one flag per
  step before the update (merged with the logged loss, so with ``log_interval = 1`` there is
  no extra read). Parameters and optimizer state stay as they were, the batch and the
  learning-rate schedule move on. ``max_nonfinite_steps`` non-finite steps in a row end the
  run with :class:`NonFiniteError`.

Under data parallelism the flags and losses of every rank are summed by one all-reduce, so
every rank takes the same decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mhckit.functional.validation import check_choice
from mhckit.models.distributed import Distributed

__all__ = ["POLICIES", "NonFiniteError", "NonFiniteGuard", "StepReading"]

POLICIES = ("stop", "skip")


class NonFiniteError(FloatingPointError):
    """Training went non-finite; the message names the iteration and what was not finite.
    ``mhckit train`` reports it in one line with exit code 3."""

    def __init__(self, iteration: int, problem: str) -> None:
        self.iteration, self.problem = iteration, problem
        super().__init__(f"iteration {iteration}: {problem}")


def _describe(loss: float, grad_norm: float) -> str:
    parts = [f"{name} {value}" for name, value in (("loss", loss), ("gradient norm", grad_norm))
             if not math.isfinite(value)]
    return "non-finite " + " and ".join(parts)


@dataclass(frozen=True)
class StepReading:
    """What the host learnt of one step: its loss (mean over ranks), gradient norm, and
    whether both were finite."""

    iteration: int
    loss: float
    grad_norm: float
    finite: bool


class NonFiniteGuard:
    """Watches every step's loss and gradient norm for NaN/inf (see the module docstring).

    ``skipped`` and ``in_a_row`` continue the counts of a resumed run.
    """

    def __init__(self, policy: str, max_in_a_row: int, env: Distributed, device: torch.device,
                 *, skipped: int = 0, in_a_row: int = 0) -> None:
        self.policy = check_choice(policy, "on_nonfinite", POLICIES)
        self.max_in_a_row, self.env = max_in_a_row, env
        self.skipped, self.in_a_row = skipped, in_a_row
        # the first non-finite step: (iteration, loss, gradient norm); iteration -1: none yet
        self._first = torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64, device=device)
        self._step = torch.zeros(3, dtype=torch.float64, device=device)  # loss, norm, bad
        self._iteration = -1

    @property
    def skips(self) -> bool:
        return self.policy == "skip"

    def state_dict(self) -> dict[str, int]:
        return {"skipped": self.skipped, "in_a_row": self.in_a_row}

    def observe(self, iteration: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """Record step ``iteration`` on the device (no transfer, no synchronisation)."""
        loss, grad_norm = loss.detach().double(), grad_norm.detach().double()
        bad = ~(torch.isfinite(loss) & torch.isfinite(grad_norm))
        first = bad & (self._first[0] < 0)
        now = torch.stack([torch.full_like(loss, iteration), loss, grad_norm])
        self._first = torch.where(first, now, self._first)
        self._step = torch.stack([loss, grad_norm, bad.double()])
        self._iteration = iteration

    def read(self) -> StepReading:
        """The one host read of the last observed step (raises :class:`NonFiniteError` as the
        policy says)."""
        values = torch.cat([self._step, (self._first[:1] >= 0).double()])
        if self.env.enabled:
            dist.all_reduce(values)
        loss, grad_norm, bad, ever = values.tolist()
        world = self.env.world_size
        reading = StepReading(self._iteration, loss / world, grad_norm / world, bad == 0)
        if self.skips:
            self._count(reading)
        elif ever:
            self._raise_first()
        return reading

    def check(self) -> None:
        """Before an evaluation or a checkpoint: under ``"stop"``, raise if any step so far
        was non-finite (under ``"skip"`` every step has been read already)."""
        if self.skips:
            return
        ever = (self._first[:1] >= 0).double()
        if self.env.enabled:
            dist.all_reduce(ever)
        if ever.item():
            self._raise_first()

    def _count(self, reading: StepReading) -> None:
        if reading.finite:
            self.in_a_row = 0
            return
        self.skipped += 1
        self.in_a_row += 1
        if self.in_a_row >= self.max_in_a_row:
            first = reading.iteration - self.in_a_row + 1
            raise NonFiniteError(reading.iteration, (
                f"{self.in_a_row} non-finite steps in a row (iterations {first} to "
                f"{reading.iteration}, the last with "
                f"{_describe(reading.loss, reading.grad_norm)}); stopped by "
                f"max_nonfinite_steps={self.max_in_a_row}"))

    def _raise_first(self) -> None:
        records = [r for r in self.env.gather(self._first.tolist()) if r[0] >= 0]
        iteration, loss, grad_norm = min(records)
        raise NonFiniteError(int(iteration), (
            f"{_describe(loss, grad_norm)}; stopped (on_nonfinite='stop') with nothing "
            f"written after it: the last checkpoint is the last good state"))
