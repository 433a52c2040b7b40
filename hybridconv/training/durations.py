"""Durations in a config: one spelling for every length a run counts, converted to steps once.

A duration is a string with its unit::

  "500 steps"        optimiser steps
  "2 epochs"         passes over the training set (fractions allowed: "0.2 epochs")
  "60000 examples"   training images seen (the global batch counts)
  "10%"              a fraction of the run's training steps
  "never"            off (only where a key allows it)

The unit travels with the number, so a cadence written for one training size
means the same at another ("10%" is about ten evaluations at 100 images and at
60,000), and one key per duration keeps each config key declared once (big_vision
reads four keys per duration, ``*_steps``/``*_epochs``/``*_examples``/``*_percent``,
for the same end). The space is optional ("2epochs"), so a value needs no quotes
on the command line.
"""

from __future__ import annotations

import dataclasses
import math
import re

_UNITS = {
  "step": "steps",
  "steps": "steps",
  "epoch": "epochs",
  "epochs": "epochs",
  "example": "examples",
  "examples": "examples",
  "%": "%",
}
_SPELLINGS = {
  "steps": "'<n> steps'",
  "epochs": "'<x> epochs'",
  "examples": "'<n> examples'",
  "%": "'<p>%' (of the run's steps)",
  "never": "'never'",
}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z%]+)\s*$")


@dataclasses.dataclass(frozen=True)
class Duration:
  """A parsed duration: ``amount`` of ``unit`` ('steps', 'epochs', 'examples', '%' or 'never')."""

  amount: float
  unit: str

  @property
  def never(self) -> bool:
    return self.unit == "never" or self.amount == 0

  def __str__(self) -> str:
    if self.unit == "never":
      return "never"
    return f"{self.amount:g}%" if self.unit == "%" else f"{self.amount:g} {self.unit}"


def parse(value, key: str, *, allow_never: bool = False, allow_fraction: bool = True) -> Duration:
  """Parses ``config.<key>``'s value.

  Raises:
    ValueError: naming the key, the value and the spellings allowed (a bare
      number has no unit, so it is refused rather than guessed).
  """
  units = [u for u in _SPELLINGS if (u != "%" or allow_fraction) and (u != "never" or allow_never)]
  allowed = ", ".join(_SPELLINGS[u] for u in units[:-1]) + f" or {_SPELLINGS[units[-1]]}"
  text = str(value).strip().lower()
  if text == "never" and allow_never:
    return Duration(0.0, "never")
  match = _PATTERN.match(text) if isinstance(value, str) else None
  unit = _UNITS.get(match.group(2)) if match else None
  if unit is None or (unit == "%" and not allow_fraction):
    raise ValueError(f"config.{key}={value!r} is not a duration; allowed: {allowed}")
  duration = Duration(float(match.group(1)), unit)
  if duration.amount == 0 and not allow_never:
    raise ValueError(f"config.{key}={value!r} must be longer than zero; allowed: {allowed}")
  if unit == "%" and duration.amount > 100:
    raise ValueError(f"config.{key}={value!r}: a fraction of training is at most 100%")
  return duration


@dataclasses.dataclass(frozen=True)
class RunClock:
  """What durations convert against: a run's steps per epoch, global batch and length."""

  steps_per_epoch: int
  batch_size: int
  total_steps: int

  def steps(self, duration: Duration) -> float:
    """``duration`` in (fractional) steps."""
    if duration.never:
      return 0.0
    per_unit = {
      "steps": 1.0,
      "epochs": float(self.steps_per_epoch),
      "examples": 1.0 / self.batch_size,
      "%": self.total_steps / 100.0,
    }[duration.unit]
    return duration.amount * per_unit

  def every(self, value, key: str, *, allow_never: bool = False) -> int:
    """A cadence in whole steps: at least 1, or 0 for 'never'."""
    duration = parse(value, key, allow_never=allow_never)
    return 0 if duration.never else max(1, round(self.steps(duration)))

  def at(self, value, key: str) -> int:
    """A point in training (a warm-up's end, a schedule's drop) in whole steps; '0 steps' is 0."""
    return round(self.steps(parse(value, key, allow_never=True)))


def run_clock(train_for, *, steps_per_epoch: int, batch_size: int) -> RunClock:
  """The clock of a run that trains for ``config.train_for`` (rounded up to whole steps: a
  run covers at least its duration)."""
  duration = parse(train_for, "train_for", allow_fraction=False)
  length = RunClock(steps_per_epoch, batch_size, total_steps=0).steps(duration)
  return RunClock(steps_per_epoch, batch_size, total_steps=max(1, math.ceil(length)))


def spell(amount: float, unit: str) -> str:
  """The one string of ``amount`` ``unit`` (12 significant digits: ``0.05 * 12`` epochs is
  '0.6 epochs'), so a config computed in code and one converted from an older key agree."""
  if unit == "never":
    return "never"
  text = f"{float(f'{amount:.12g}'):.12g}"
  return f"{text}%" if unit == "%" else f"{text} {unit}"
