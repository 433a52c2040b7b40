"""What a run directory holds, read back for a study (no checkpoints needed).

A study report is computed from each run's light records only: ``config.json``,
``metrics.jsonl``, ``summary.json``, ``run_info.json``, ``train_subset.json``,
``robustness.json`` and ``filters/first_layer.npz`` -- about a hundred KB a
run, small enough to commit, so ``hybridconv compare`` regenerates a report
from a fresh clone without the checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from hybridconv import configlib, run_layout
from hybridconv.run_layout import (
  CHECKPOINT_DIR,
  COMPILATION_CACHE_DIR,
  FIGURES_DIR,
  FILTERS_DIR,
  METRICS_FILE,
  ROBUSTNESS_FILE,
)
from hybridconv.tracking.jsonl_logger import read_metrics
from hybridconv.training import provenance
from hybridconv.training import workdir as workdir_lib

_SKIP_DIRS = {CHECKPOINT_DIR, "wandb", FILTERS_DIR, FIGURES_DIR, COMPILATION_CACHE_DIR}


@dataclasses.dataclass
class RunRecord:
  """One run's records. ``path`` is absolute; ``flat`` is the config flattened."""

  path: str
  config: dict[str, Any]
  flat: dict[str, Any]
  metrics: dict[str, tuple[np.ndarray, np.ndarray]]
  summary: dict[str, Any] | None
  starts: list[dict[str, Any]]
  robustness: dict[str, Any] | None

  @property
  def finished(self) -> bool:
    return bool(self.summary and self.summary.get("finished"))

  def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of a logged scalar (empty arrays when never logged)."""
    return self.metrics.get(key, (np.zeros(0, int), np.zeros(0)))

  def final(self, key: str = "eval/accuracy") -> float:
    """The value at the last logged step (NaN when never logged)."""
    _, values = self.series(key)
    return float(values[-1]) if len(values) else float("nan")

  def best(self, key: str = "eval/accuracy") -> tuple[float, int]:
    """The highest value and its step (NaN, -1 when never logged)."""
    steps, values = self.series(key)
    if not len(values):
      return float("nan"), -1
    i = int(np.nanargmax(values))
    return float(values[i]), int(steps[i])


def load_run(path: str) -> RunRecord:
  """The records of the run in ``path`` (which holds ``config.json``)."""
  path = os.path.abspath(path)
  config = workdir_lib.read_json(os.path.join(path, run_layout.CONFIG_FILE))
  if not isinstance(config, dict):
    raise ValueError(f"{path} holds no readable {run_layout.CONFIG_FILE}")
  metrics = read_metrics(path) if os.path.exists(os.path.join(path, METRICS_FILE)) else {}
  return RunRecord(
    path=path,
    config=config,
    # Keys added since the run was trained get their defaults, so an older run does not
    # differ from a newer one of the same experiment in keys it never knew.
    flat=workdir_lib.flatten_config(configlib.with_defaults(config)),
    metrics=metrics,
    summary=workdir_lib.read_summary(path),
    starts=provenance.read_run_info(path),
    robustness=workdir_lib.read_json(os.path.join(path, ROBUSTNESS_FILE)),
  )


def find_run_dirs(paths: Iterable[str]) -> list[str]:
  """Run directories (those with ``config.json``) at or below ``paths``, sorted."""
  found = set()
  for root in paths:
    if os.path.isfile(os.path.join(root, run_layout.CONFIG_FILE)):
      found.add(os.path.abspath(root))
      continue
    for directory, subdirs, files in os.walk(root, followlinks=True):
      subdirs[:] = [d for d in subdirs if d not in _SKIP_DIRS and not d.startswith(".")]
      if run_layout.CONFIG_FILE in files:
        found.add(os.path.abspath(directory))
        subdirs[:] = []
  return sorted(found)
