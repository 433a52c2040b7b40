"""Gabor-likeness of a run's first-layer filters at the start and the end, against a null.

A fitter's R^2 means little alone: random filters of small size already fit
well. So every score here comes with two references computed by the same
fitter (:func:`hybridconv.analysis.gabor_fit.fit_conv_kernel`, 'dominant'
mode):

* the **null**: phase-randomised surrogates of the same filters (same power
  spectrum, no spatial structure; :mod:`hybridconv.analysis.gabor_null`);
  a filter counts as Gabor-like when its R^2 exceeds the null's 95th
  percentile;
* the **positive control**: the fixed Gabor bank at the same kernel size.

Scores are cached per run in ``gabor_likeness.json`` and the control once per
report directory in ``gabor_likeness_control.json`` (light records, committed
with a study), so a study report is regenerated without compiling the fitter.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from hybridconv.analysis import gabor_fit, gabor_null
from hybridconv.kernels import banks
from hybridconv.run_layout import LIKENESS_CONTROL_FILE, LIKENESS_FILE
from hybridconv.tracking import snapshots
from hybridconv.training import workdir as workdir_lib

CONTROL_FILE = LIKENESS_CONTROL_FILE  # in the study root
VERSION = 1
NULL_DRAWS = 4  # surrogates per filter: 4 x 32 filters = 128 null scores per run
NULL_QUANTILE = 0.95


def r2_scores(kernel_hwio: np.ndarray) -> np.ndarray:
  """Whole-filter R^2 of each output filter's Gabor fit."""
  result = gabor_fit.fit_conv_kernel(np.asarray(kernel_hwio, np.float32), "dominant")
  return np.asarray(result.r2_filter, np.float64)


def score_kernels(kernel_hwio: np.ndarray, seed: int = 0) -> dict[str, Any]:
  """R^2 per filter, the null's scores and the fraction above its 95th percentile."""
  r2 = r2_scores(kernel_hwio)
  null = gabor_null.null_scores(
    np.asarray(kernel_hwio, np.float32), jax.random.key(seed), num_draws=NULL_DRAWS, mode="dominant"
  ).ravel()
  threshold = float(np.quantile(null, NULL_QUANTILE))
  return {
    "r2": r2.tolist(),
    "r2_mean": float(r2.mean()),
    "r2_median": float(np.median(r2)),
    "null_r2": null.tolist(),
    "null_r2_median": float(np.median(null)),
    "null_p95": threshold,
    "frac_above_null_p95": float((r2 > threshold).mean()),
  }


def positive_control(
  kernel_size: tuple[int, int], num_filters: int, cache_dir: str | None = None
) -> dict[str, Any]:
  """Scores of the default fixed Gabor bank (as many filters as the layer, when it has them).

  With ``cache_dir`` the scores are kept in ``<cache_dir>/gabor_likeness_control.json``
  (a light record beside the runs' own caches): scoring compiles the fitter for the
  bank's shape, which was most of a study report's regeneration time.
  """
  key = {"version": VERSION, "kernel_size": list(kernel_size), "num_filters": num_filters}
  path = os.path.join(cache_dir, CONTROL_FILE) if cache_dir else None
  cached = workdir_lib.read_json(path) if path else None
  if isinstance(cached, dict) and all(cached.get(k) == v for k, v in key.items()):
    return cached["scores"]
  bank = np.asarray(banks.make_bank("gabor", tuple(kernel_size)))
  bank = bank[..., :num_filters][:, :, None, :]
  scores = score_kernels(bank)
  if path:
    workdir_lib.write_json(path, {**key, "scores": scores})
  return scores


def run_likeness(workdir: str) -> dict[str, Any] | None:
  """``{'initial': scores, 'final': scores, 'kernel_size', ...}`` of a run, cached; None without
  a first-layer snapshot."""
  snapshot = snapshots.read_snapshot(workdir)
  if "final/kernel" not in snapshot:
    return None
  path = os.path.join(workdir, LIKENESS_FILE)
  final_step = int(snapshot["final/step"])
  cached = workdir_lib.read_json(path)
  if (
    isinstance(cached, dict)
    and cached.get("version") == VERSION
    and cached.get("final_step") == final_step
  ):
    return cached
  result = {
    "version": VERSION,
    "final_step": final_step,
    "initial_step": int(snapshot["initial/step"]),
    "kernel_size": list(snapshot["final/kernel"].shape[:2]),
    "initial": score_kernels(snapshot["initial/kernel"]),
    "final": score_kernels(snapshot["final/kernel"]),
  }
  workdir_lib.write_json(path, result)
  return result
