"""Durations: one spelling (steps, epochs, examples, % of the run), converted to steps once."""

from __future__ import annotations

import os

import pytest

from configs import default
from hybridconv import configlib
from hybridconv.training import checkpointing, train
from hybridconv.training import durations as d
from hybridconv.training.cadence import Cadence
from tests.conftest import make_tiny_config


@pytest.mark.parametrize(
  "text, amount, unit",
  [
    ("500 steps", 500, "steps"),
    ("1 step", 1, "steps"),
    ("2epochs", 2, "epochs"),
    ("0.2 epochs", 0.2, "epochs"),
    ("1 epoch", 1, "epochs"),
    ("60000 examples", 60000, "examples"),
    ("10%", 10, "%"),
    (" 2.5 % ", 2.5, "%"),
    ("1e3 steps", 1000, "steps"),
  ],
)
def test_parse_reads_every_spelling(text, amount, unit):
  assert d.parse(text, "eval_every") == d.Duration(amount, unit)


@pytest.mark.parametrize(
  "value, kwargs, message",
  [
    ("5", {}, "config.eval_every='5' is not a duration; allowed: '<n> steps', '<x> epochs'"),
    (5, {}, "config.eval_every=5 is not a duration"),
    ("2 weeks", {}, "is not a duration"),
    ("-1 steps", {}, "is not a duration"),
    ("0 epochs", {}, "must be longer than zero"),
    ("never", {}, "is not a duration; allowed: '<n> steps', '<x> epochs', '<n> examples' or '<p>%"),
    ("150%", {}, "at most 100%"),
    ("50%", {"allow_fraction": False}, "allowed: '<n> steps', '<x> epochs' or '<n> examples'"),
  ],
)
def test_parse_refuses_with_the_key_the_value_and_what_is_allowed(value, kwargs, message):
  with pytest.raises(
    ValueError, match=f"^{message}" if message.startswith("config") else None
  ) as e:
    d.parse(value, "eval_every", **kwargs)
  assert message in str(e.value)


def test_never_is_zero_where_a_key_allows_it():
  assert d.parse("never", "tracking.filters_every", allow_never=True).never
  assert d.parse("0 steps", "optim.warmup", allow_never=True).never


def test_the_clock_converts_each_unit_against_the_run():
  clock = d.RunClock(steps_per_epoch=50, batch_size=200, total_steps=400)
  assert clock.every("100 steps", "k") == 100
  assert clock.every("2 epochs", "k") == 100
  assert clock.every("20000 examples", "k") == 100
  assert clock.every("25%", "k") == 100
  assert clock.every("0.001 epochs", "k") == 1  # a cadence fires at most every step
  assert clock.every("never", "k", allow_never=True) == 0
  assert clock.at("0 steps", "optim.warmup") == 0
  assert clock.at("0.2 epochs", "optim.warmup") == 10


def test_a_run_covers_at_least_its_length():
  assert d.run_clock("3 epochs", steps_per_epoch=468, batch_size=128).total_steps == 1404
  assert d.run_clock("0.01 epochs", steps_per_epoch=10, batch_size=8).total_steps == 1
  assert d.run_clock("1000 examples", steps_per_epoch=5, batch_size=300).total_steps == 4
  with pytest.raises(ValueError, match="train_for='10%' is not a duration"):
    d.run_clock("10%", steps_per_epoch=10, batch_size=8)


@pytest.mark.parametrize(
  "train_size, batch, train_for",
  [
    (100, 50, "80 epochs"),
    (200, 200, "40 epochs"),  # one step an epoch: epoch-counted cadences evaluated every step
    (1_000, 128, "50 epochs"),
    (60_000, 128, "8 epochs"),
    (200, 200, "3 epochs"),  # shorter than ten steps: every step
  ],
)
def test_default_cadence_is_about_ten_evaluations_and_a_few_saves_at_any_size(
  train_size, batch, train_for
):
  config = default.get_config()
  config.train_for = train_for
  clock = train.run_clock(config, steps_per_epoch=max(1, train_size // batch))
  cadence = Cadence.from_config(config, clock)
  steps = range(1, clock.total_steps + 1)
  evals = sum(cadence.eval_due(s) for s in steps)
  saves = sum(cadence.checkpoint_due(s) for s in steps)
  assert min(10, clock.total_steps) <= evals <= 11, (train_size, evals)
  assert min(4, clock.total_steps) <= saves <= 5, (train_size, saves)
  assert cadence.checkpoint_seconds == 600.0  # and every 10 minutes of wall time


def test_spell_is_one_string_for_a_value_computed_two_ways():
  assert d.spell(0.05 * 12, "epochs") == "0.6 epochs" == d.spell(0.6, "epochs")
  assert d.spell(8.0, "epochs") == "8 epochs"
  assert d.spell(20, "steps") == "20 steps"
  assert d.spell(12.5, "%") == "12.5%"


def test_configs_written_with_the_old_keys_upgrade_to_the_same_values():
  saved = {
    "num_epochs": 12.0,
    "num_train_steps": -1,
    "log_every_steps": 7,
    "eval_every_epochs": 1.5,
    "optim": {"warmup_epochs": 0.05 * 12, "step_epochs": [30.0, 60.0], "name": "adamw"},
    "checkpoint": {"every_epochs": 3.0, "keep": 1},
    "tracking": {"scalars_every_steps": 0, "filters_every_steps": 93},
  }
  upgraded = configlib.upgrade(saved)
  assert upgraded == {
    "train_for": "12 epochs",
    "log_every": "7 steps",
    "eval_every": "1.5 epochs",
    "optim": {"warmup": "0.6 epochs", "step_at": ["30 epochs", "60 epochs"], "name": "adamw"},
    "checkpoint": {"every": "3 epochs", "keep": 1},
    "tracking": {"scalars_every": "never", "filters_every": "93 steps"},
  }
  assert configlib.upgrade({"num_epochs": 3.0, "num_train_steps": 40})["train_for"] == "40 steps"
  assert configlib.upgrade(upgraded) == upgraded  # current configs pass unchanged
  full = configlib.with_defaults(saved)  # what compare, evaluate and resume read
  assert "num_epochs" not in full and full["train_for"] == "12 epochs"


def test_a_save_comes_every_few_minutes_of_wall_time_whatever_the_step_cadence(tmp_path):
  # One save at the end by steps; a wall-clock period far below a step's time adds one at
  # every log event (every 2 steps), the points where all processes can agree.
  config = make_tiny_config(
    "free",
    **{
      "checkpoint.every": "100%",
      "checkpoint.every_minutes": 1e-6,
      "checkpoint.keep": 10,
      "checkpoint.async_save": False,
    },
  )
  train.train_and_evaluate(config, str(tmp_path))
  saved = checkpointing.existing_steps(os.path.join(str(tmp_path), "checkpoints"))
  assert saved == [2, 4, 6, 8]
