"""``robustness.json`` read back, and published to the run's W&B run.

No JAX here. The section of a run's ``REPORT.md`` that shows these results is
:mod:`hybridconv.reports.robustness`, on the reports floor above.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from hybridconv.robustness import suites
from hybridconv.run_layout import ROBUSTNESS_FILE


def read_results(workdir: str) -> dict[str, Any] | None:
  """``robustness.json`` of ``workdir``, or None if it has none."""
  path = os.path.join(workdir, ROBUSTNESS_FILE)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def by_family(results: Mapping[str, Any]) -> dict[str, list[dict]]:
  """Entries grouped by family, in the order they were evaluated."""
  grouped: dict[str, list[dict]] = {}
  for entry in results["entries"]:
    grouped.setdefault(entry["family"], []).append(entry)
  return grouped


def wandb_rows(results: Mapping[str, Any]) -> tuple[list[str], list[list]]:
  """``(columns, rows)`` of the W&B results table."""
  columns = ["family", "level", "accuracy", "num_images"]
  return columns, [
    [e["family"], e["level"], e["accuracy"], e["num_images"]] for e in results["entries"]
  ]


def log_to_wandb(logger, results: Mapping[str, Any]) -> None:
  """A table of every entry, the per-family means, and one line plot per family.

  ``logger`` is a :class:`hybridconv.tracking.Logger` that reaches the run's
  W&B run (same run id, so the results join the training run's page), e.g. a
  :class:`~hybridconv.tracking.wandb_logger.WandbLogger` behind a
  :class:`~hybridconv.tracking.writers.BackgroundWriter`.
  """
  columns, rows = wandb_rows(results)
  scalars = {f"robustness/{family}": value for family, value in results["summary"].items()}
  logger.log_results_table("robustness/results", columns, rows, scalars=scalars)
  for family, entries in by_family(results).items():
    if family == "clean":
      continue
    family_rows = [[e["level"], e["accuracy"]] for e in entries]
    logger.log_results_table(
      f"robustness/{family}_table",
      ["level", "accuracy"],
      family_rows,
      line_plot=(
        f"robustness/{family}_curve",
        "level",
        "accuracy",
        f"{suites.label(family)}: accuracy vs level",
      ),
    )
