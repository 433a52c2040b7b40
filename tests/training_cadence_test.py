"""Cadence: one due-rule for log, eval, checkpoint, scalar and filter events."""

from __future__ import annotations

from hybridconv.training.cadence import Cadence
from hybridconv.training.durations import RunClock
from tests.conftest import make_tiny_config


def test_from_config_converts_epochs_to_steps():
  config = make_tiny_config(
    **{
      "eval_every": "0.5 epochs",
      "checkpoint.every": "0.25 epochs",
      "log_every": "3 steps",
      "tracking.scalars_every": "4 steps",
      "tracking.filters_every": "never",
    }
  )
  cadence = Cadence.from_config(config, RunClock(steps_per_epoch=8, batch_size=32, total_steps=10))
  assert cadence == Cadence(
    total_steps=10,
    log_every=3,
    eval_every=4,
    checkpoint_every=2,
    scalars_every=4,
    filters_every=0,
    checkpoint_seconds=600.0,
  )


def test_every_cadence_fires_at_multiples_step_zero_and_the_end():
  cadence = Cadence(
    total_steps=10, log_every=3, eval_every=4, checkpoint_every=5, scalars_every=4, filters_every=0
  )
  steps = range(11)
  assert [s for s in steps if cadence.eval_due(s)] == [0, 4, 8, 10]
  assert [s for s in steps if cadence.checkpoint_due(s)] == [0, 5, 10]
  # Logs come with every evaluation and checkpoint too, so each holds the means up to its step.
  assert [s for s in steps if cadence.log_due(s)] == [0, 3, 4, 5, 6, 8, 9, 10]
  assert [s for s in steps if cadence.scalars_due(s)] == [0, 4, 8, 10]
  assert not any(cadence.filters_due(s) for s in steps)  # 0 = off


def test_remaining_counts_the_events_still_due_after_a_step():
  cadence = Cadence(
    total_steps=10, log_every=3, eval_every=4, checkpoint_every=5, scalars_every=4, filters_every=0
  )
  for step in range(11):
    expected = {
      kind: sum(cadence.due(s, every) for s in range(step + 1, 11))
      for kind, every in (("eval", 4), ("checkpoint", 5), ("summary", 0))
    }
    assert cadence.remaining(step) == expected, step
