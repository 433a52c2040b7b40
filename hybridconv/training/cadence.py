"""When a run logs, evaluates, checkpoints and summarises: one value computed once from the config.

Every cadence follows one rule (:meth:`Cadence.due`): it fires at multiples of
its period, step 0 included, and at the last step, so the loop never carries
two copies of "is this step due" with different step-0 rules, and never reads
the config itself.
"""

from __future__ import annotations

import dataclasses

from hybridconv import tracking
from hybridconv.training import durations


@dataclasses.dataclass(frozen=True)
class Cadence:
  """Periods in steps (0 = never) and the run's length.

  Attributes:
    total_steps: the step the run ends at; every cadence fires there.
    log_every: ``config.log_every``; log events also come with every
      evaluation and checkpoint, so each holds the means up to its step.
    eval_every: ``config.eval_every``.
    checkpoint_every: ``config.checkpoint.every``.
    scalars_every: ``config.tracking.scalars_every``: log events that carry
      the per-layer norms.
    filters_every: ``config.tracking.filters_every``: filter summaries.
    checkpoint_seconds: ``config.checkpoint.every_minutes`` in seconds (0 =
      off): a save also comes at the first log event this long after the last,
      so a long run loses little to a crash whatever its step cadence.
  """

  total_steps: int
  log_every: int
  eval_every: int
  checkpoint_every: int
  scalars_every: int = 0
  filters_every: int = 0
  checkpoint_seconds: float = 0.0

  @classmethod
  def from_config(cls, config, clock: durations.RunClock) -> Cadence:
    """Every cadence of ``config`` in steps of the run that ``clock`` describes."""
    return cls(
      total_steps=clock.total_steps,
      log_every=clock.every(config.log_every, "log_every"),
      eval_every=clock.every(config.eval_every, "eval_every"),
      checkpoint_every=clock.every(config.checkpoint.every, "checkpoint.every"),
      scalars_every=clock.every(
        config.tracking.scalars_every, "tracking.scalars_every", allow_never=True
      ),
      filters_every=clock.every(
        config.tracking.filters_every, "tracking.filters_every", allow_never=True
      ),
      checkpoint_seconds=60.0 * config.checkpoint.every_minutes,
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


def check_config(config) -> None:
  """Refuses a duration key that does not parse, from the config alone (before any data).

  Raises:
    ValueError: naming the key, its value and the spellings allowed.
  """
  durations.parse(config.train_for, "train_for", allow_fraction=False)
  for key, value in (
    ("log_every", config.log_every),
    ("eval_every", config.eval_every),
    ("checkpoint.every", config.checkpoint.every),
  ):
    durations.parse(value, key)
  for key in ("scalars_every", "filters_every"):
    durations.parse(config.tracking[key], f"tracking.{key}", allow_never=True)
  minutes = config.checkpoint.every_minutes
  if not (isinstance(minutes, int | float) and minutes >= 0):
    raise ValueError(f"config.checkpoint.every_minutes={minutes!r} must be a number >= 0 (0 = off)")
