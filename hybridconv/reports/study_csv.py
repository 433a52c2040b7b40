"""A study's CSV files: ``results.csv`` (one row per run), ``summary.csv`` (one per group) and
``paired.csv`` (one per reading and comparison).

The column names are the files' format, read by people and scripts: the study
table (:class:`hybridconv.studies.compare.Study`) holds the same numbers as data,
and only this module spells them as columns.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from hybridconv.studies import compare, records, stats


def results_rows(
  runs: Sequence[records.RunRecord], factors: Sequence[str], root: str
) -> list[dict[str, Any]]:
  """One row per run (its path relative to ``root``): factors, seed, final and best test
  metrics, time, robustness summaries."""
  rows = []
  for run in runs:
    best, best_step = run.best()
    row = {
      "run": os.path.relpath(run.path, root),
      **{k: run.flat.get(k) for k in factors},
      "seed": run.flat.get("seed"),
      "finished": run.finished,
      "final_eval_accuracy": run.final(),
      "best_eval_accuracy": best,
      "best_step": best_step,
      "final_eval_loss": run.final("eval/loss"),
      "steps": (run.summary or {}).get("step"),
      "train_seconds": (run.summary or {}).get("train_seconds"),
    }
    for family, value in sorted(compare.robustness_summary(run).items()):
      row[f"robustness_{family}"] = value
    rows.append(row)
  return rows


def summary_rows(study: compare.Study) -> list[dict[str, Any]]:
  """One row per group: n, mean, sd, 95% CI, robustness; paired differences to the reference."""
  return [_summary_row(group, study.factors, study.reference is not None) for group in study.groups]


def _summary_row(group: compare.Group, factors: Sequence[str], paired: bool) -> dict[str, Any]:
  row: dict[str, Any] = {
    **dict(zip(factors, group.levels, strict=True)),
    "n": group.final.n,
    "mean": group.final.mean,
    "std": group.final.std,
    "ci_low": group.final.ci_low,
    "ci_high": group.final.ci_high,
    "best_mean": group.best.mean,
    "seeds": " ".join(str(seed) for seed in group.seeds),
  }
  for family, interval in group.robustness.items():
    row.setdefault("robustness_n", group.robustness_n)
    row[f"robustness_{family}_mean"] = interval.mean
    row[f"robustness_{family}_ci_low"] = interval.ci_low
    row[f"robustness_{family}_ci_high"] = interval.ci_high
  if not paired:
    return row
  if group.is_reference:
    row.update(dict.fromkeys(("diff_n", "diff_mean", "diff_ci_low", "diff_ci_high", "wins"), ""))
    row.update({"diff_p": math.nan, "is_reference": True})
  elif group.diff is None:
    row.update({"diff_n": 0, "diff_p": math.nan, "is_reference": False})
  else:
    row.update({**_difference_columns("diff", group.diff, "wins"), "is_reference": False})
    for family, diff in group.robustness_diff.items():
      prefix = f"diff_robustness_{family}"
      row.update(_difference_columns(prefix, diff, f"{prefix}_wins"))
  row["diff_p_holm"] = group.diff_p_holm
  for family, p in group.robustness_p_holm.items():
    row[f"diff_robustness_{family}_p_holm"] = p
  return row


def _difference_columns(
  prefix: str, diff: stats.PairedDifference, wins_column: str
) -> dict[str, Any]:
  """A paired difference as the columns ``{prefix}_n``, ``_mean``, ``_ci_low``, ``_ci_high``,
  ``wins_column`` and ``{prefix}_p``."""
  return {
    f"{prefix}_n": diff.n,
    f"{prefix}_mean": diff.mean,
    f"{prefix}_ci_low": diff.ci_low,
    f"{prefix}_ci_high": diff.ci_high,
    wins_column: f"{diff.wins}/{diff.n}",
    f"{prefix}_p": diff.p_value,
  }


def write_csv(path: str, rows: Sequence[Mapping[str, Any]]) -> None:
  """Every row under the union of their columns, in order of first appearance."""
  columns: list[str] = []
  for row in rows:
    columns += [c for c in row if c not in columns]
  with open(path, "w", encoding="utf-8", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns, restval="")
    writer.writeheader()
    for row in rows:
      writer.writerow({k: _csv_value(v) for k, v in row.items()})


def _csv_value(value: Any) -> Any:
  if isinstance(value, float):
    return "" if math.isnan(value) else f"{value:.6g}"
  return value
