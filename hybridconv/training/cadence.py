"""When a run logs, evaluates, checkpoints and summarises: one value computed once from the config.

Every cadence follows one rule (:meth:`Cadence.due`): it fires at multiples of
its period, step 0 included, and at the last step, so the loop never carries
two copies of "is this step due" with different step-0 rules, and never reads
the config itself.
"""

from __future__ import annotations

import dataclasses

from hybridconv import tracking


def every_steps(epochs: float, steps_per_epoch: int) -> int:
  """An epoch-valued cadence in steps (at least every step)."""
  return max(1, round(epochs * steps_per_epoch))


@dataclasses.dataclass(frozen=True)
class Cadence:
  """Periods in steps (0 = never) and the run's length.

  Attributes:
    total_steps: the step the run ends at; every cadence fires there.
    log_every: ``config.log_every_steps``; log events also come with every
      evaluation and checkpoint, so each holds the means up to its step.
    eval_every: ``config.eval_every_epochs`` in steps.
    checkpoint_every: ``config.checkpoint.every_epochs`` in steps.
    scalars_every: ``config.tracking.scalars_every_steps``: log events that
      carry the per-layer norms.
    filters_every: ``config.tracking.filters_every_steps``: filter summaries.
  """

  total_steps: int
  log_every: int
  eval_every: int
  checkpoint_every: int
  scalars_every: int = 0
  filters_every: int = 0

  @classmethod
  def from_config(cls, config, *, steps_per_epoch: int, total_steps: int) -> Cadence:
    return cls(
      total_steps=total_steps,
      log_every=config.log_every_steps,
      eval_every=every_steps(config.eval_every_epochs, steps_per_epoch),
      checkpoint_every=every_steps(config.checkpoint.every_epochs, steps_per_epoch),
      scalars_every=config.tracking.scalars_every_steps,
      filters_every=config.tracking.filters_every_steps,
    )

  def due(self, step: int, every: int) -> bool:
    """Whether a period of ``every`` steps fires at ``step``: 0 never; multiples and the end."""
    return tracking.is_due(step, every, self.total_steps)

  def remaining(self, step: int) -> dict[str, int]:
    """How many evaluations, checkpoints and filter summaries are due after ``step``."""
    return {
      "eval": _due_after(step, self.eval_every, self.total_steps),
      "checkpoint": _due_after(step, self.checkpoint_every, self.total_steps),
      "summary": _due_after(step, self.filters_every, self.total_steps),
    }

  def eval_due(self, step: int) -> bool:
    return self.due(step, self.eval_every)

  def checkpoint_due(self, step: int) -> bool:
    return self.due(step, self.checkpoint_every)

  def log_due(self, step: int) -> bool:
    return self.due(step, self.log_every) or self.eval_due(step) or self.checkpoint_due(step)

  def scalars_due(self, step: int) -> bool:
    return self.due(step, self.scalars_every)

  def filters_due(self, step: int) -> bool:
    return self.due(step, self.filters_every)


def _due_after(step: int, every: int, total: int) -> int:
  """Steps in ``(step, total]`` where a period of ``every`` fires (its multiples, and the end)."""
  if every <= 0 or step >= total:
    return 0
  multiples = total // every - step // every
  return multiples + (total % every != 0)
