"""How a study report names its arms and sizes, and formats its Markdown cells.

Shared by the modules that write ``STUDY.md``
(:mod:`hybridconv.reports.study_report` and the sections it draws from).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

from hybridconv.run_layout import SUBSET_FILE
from hybridconv.studies import grid, records

SIZE_KEY = "data.train_size"


def fmt(value: Any, digits: int = 4) -> str:
  if isinstance(value, float):
    return "" if math.isnan(value) else f"{value:.{digits}f}"
  return "" if value is None else str(value)


def pct(value: float) -> str:
  return (
    ""
    if value is None or (isinstance(value, float) and math.isnan(value))
    else f"{100 * value:.2f}"
  )


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += [
    "| " + " | ".join(fmt(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows
  ]
  return lines + [""]


def train_images(run: records.RunRecord) -> int:
  """Training images a run used (its subset record, else the configured size)."""
  try:
    with open(os.path.join(run.path, SUBSET_FILE), encoding="utf-8") as f:
      return int(json.load(f)["num_examples"])
  except (OSError, ValueError, KeyError):
    return int(run.flat.get(SIZE_KEY) or 0)


def train_size_text(size: Any) -> str:
  return "all training images" if not size else f"{int(size):,} training images"


def arm_name(run: records.RunRecord, arm_factors: Sequence[str]) -> str:
  """``'free, 100 images'``: the factor values (key names only when several could be confused)."""
  if not arm_factors:
    return "all runs"
  parts = []
  for key in arm_factors:
    value = grid.label(run.flat.get(key))
    if key == SIZE_KEY:
      parts.append(f"{train_images(run)} images")
    elif len(arm_factors) - (SIZE_KEY in arm_factors) > 1:
      parts.append(f"{key.split('.')[-1]}={value}")
    else:
      parts.append(value)
  return ", ".join(parts)


def arm_groups(runs, arm_factors) -> dict[str, list[records.RunRecord]]:
  arms: dict[str, list[records.RunRecord]] = {}
  for run in runs:
    arms.setdefault(arm_name(run, arm_factors), []).append(run)
  return arms
