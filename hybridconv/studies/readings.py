"""Paired readings of a study against its reference arm, each with Holm's adjustment per size.

A run of a study is read several ways, and each is a separate comparison:

* **at the end** -- test accuracy after the whole budget (``eval/accuracy``): which arm
  ends better;
* **after part of the budget** -- validation accuracy at an evaluation along training
  (e.g. after an eighth of the budget's training images): which arm learns faster;
* **robustness beyond clean** -- per seed, the arm's accuracy under a corruption family
  minus the reference's, minus the same difference on clean images: what a first layer
  buys under corruption beyond its clean accuracy.

For each reading, group (every factor but the seed) and its reference group at the same
levels of the other factors, the per-seed differences give a mean, a 95% paired
t-interval, wins and a paired t-test; Holm's adjustment runs over the comparisons of one
reading at one level of the other factors (one training size), so the family is the arms
compared at that size.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hybridconv.studies import records, stats

END_READING = "test, end of training"
VALIDATION_KEY = "val/accuracy"
# Fractions of the budget at which the validation reading is taken (a run evaluates 8 times).
BUDGET_FRACTIONS = (0.125, 0.25, 0.5, 1.0)


@dataclasses.dataclass(frozen=True)
class Reading:
  """One way to read a run: a name, and the run's value (None where it has none)."""

  name: str
  value: Callable[[records.RunRecord], float | None]


def validation_at(run: records.RunRecord, fraction: float) -> float | None:
  """Validation accuracy at the evaluation nearest ``fraction`` of the run's steps."""
  steps, values = run.series(VALIDATION_KEY)
  total = (run.summary or {}).get("total_steps")
  if not len(steps) or not total:
    return None
  index = int(np.argmin(np.abs(np.asarray(steps, float) - fraction * float(total))))
  if abs(steps[index] - fraction * float(total)) > 0.07 * float(total):
    return None  # no evaluation near that point of training
  return float(values[index])


def images_seen(run: records.RunRecord, fraction: float) -> int:
  """Training images seen after ``fraction`` of the run's budget."""
  total = float((run.summary or {}).get("total_steps") or 0)
  return int(round(fraction * total)) * int(run.flat.get("batch_size") or 0)


def robustness_beyond_clean(run: records.RunRecord, family: str) -> float | None:
  """A family's accuracy minus clean accuracy on the same test images (None if either lacks)."""
  summary = (run.robustness or {}).get("summary") or {}
  if family not in summary or "clean" not in summary:
    return None
  return float(summary[family]) - float(summary["clean"])


def budget_reading(fraction: float) -> str:
  """The name of the validation reading after ``fraction`` of the budget (``paired.csv``)."""
  return f"validation, after {fraction:g} of the budget"


def budget_fraction(reading: str) -> float | None:
  """The fraction of the budget a validation reading is taken at (None for other readings)."""
  if reading.startswith("validation, after "):
    return float(reading.split()[2])
  return None


def readings_of(runs: Sequence[records.RunRecord]) -> list[Reading]:
  """The readings these runs support: the end, the budget fractions, robustness families."""
  found = [Reading(END_READING, lambda run: run.final("eval/accuracy"))]
  if any(len(run.series(VALIDATION_KEY)[0]) for run in runs):
    for fraction in BUDGET_FRACTIONS:
      found.append(
        Reading(
          budget_reading(fraction),
          lambda run, f=fraction: validation_at(run, f),
        )
      )
  families = sorted(
    {f for run in runs for f in ((run.robustness or {}).get("summary") or {}) if f != "clean"}
  )
  for family in families:
    found.append(
      Reading(
        f"robustness beyond clean: {family}",
        lambda run, f=family: robustness_beyond_clean(run, f),
      )
    )
  return found


def paired_rows(
  runs: Sequence[records.RunRecord],
  factors: Sequence[str],
  reference: tuple[str, Any],
  readings: Sequence[Reading] | None = None,
) -> list[dict[str, Any]]:
  """One row per (reading, group other than the reference): the paired difference to it.

  Rows hold the factors, ``reading``, ``n``, ``mean``, ``ci_low``, ``ci_high``, ``wins``,
  ``losses``, ``p``, ``p_holm`` (within the reading and the levels of the other factors),
  ``family_size`` (the comparisons Holm adjusted over) and ``images_seen`` (budget readings).
  """
  ref_key, ref_value = reference
  position = list(factors).index(ref_key)
  groups: dict[tuple, list[records.RunRecord]] = {}
  for run in runs:
    groups.setdefault(tuple(run.flat.get(k) for k in factors), []).append(run)
  rows = []
  for reading in readings if readings is not None else readings_of(runs):
    for key in sorted(groups, key=lambda k: tuple(map(_sortable, k))):
      if str(key[position]) == ref_value:
        continue
      partner = (
        key[:position] + (_reference_value(groups, position, ref_value),) + key[position + 1 :]
      )
      if partner not in groups:
        continue
      row = _row(reading, key, factors, groups[key], groups[partner])
      if row is not None:
        rows.append(row)
  _adjust(rows, [k for k in factors if k != ref_key])
  return rows


def _reference_value(groups: Mapping[tuple, Any], position: int, ref_value: str) -> Any:
  """The reference arm's factor value as the runs hold it (the command line gives text)."""
  return next((k[position] for k in groups if str(k[position]) == ref_value), ref_value)


def _row(reading, key, factors, members, reference_members) -> dict[str, Any] | None:
  def by_seed(group):
    values = {run.flat.get("seed"): reading.value(run) for run in group}
    return {seed: v for seed, v in values.items() if v is not None and not math.isnan(v)}

  mine, theirs = by_seed(members), by_seed(reference_members)
  if not set(mine) & set(theirs):
    return None
  diff = stats.paired_difference(mine, theirs)
  fraction = budget_fraction(reading.name)
  return {
    **dict(zip(factors, key, strict=True)),
    "reading": reading.name,
    "images_seen": images_seen(members[0], fraction) if fraction else "",
    "n": diff.n,
    "mean": diff.mean,
    "ci_low": diff.ci_low,
    "ci_high": diff.ci_high,
    "wins": diff.wins,
    "losses": diff.losses,
    "p": diff.p_value,
  }


def _adjust(rows: list[dict[str, Any]], other_factors: Sequence[str]) -> None:
  """Holm within each reading and level of the factors other than the reference's."""
  families: dict[tuple, list[dict[str, Any]]] = {}
  for row in rows:
    families.setdefault((row["reading"], *(repr(row[k]) for k in other_factors)), []).append(row)
  for members in families.values():
    adjusted = stats.holm([row["p"] for row in members])
    tests = sum(not math.isnan(row["p"]) for row in members)
    for row, p in zip(members, adjusted, strict=True):
      row["p_holm"] = p
      row["family_size"] = tests


def _sortable(value: Any) -> tuple:
  return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))
