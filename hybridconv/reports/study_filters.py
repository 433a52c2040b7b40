"""What the first layer became, in ``STUDY.md``: its filters, their Gabor-likeness, where the
learnable Gabor parameters went, and how far every filter moved.

Read from each run's filter snapshot (:mod:`hybridconv.tracking.snapshots`) and
Gabor-likeness records (:mod:`hybridconv.studies.likeness`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np

from hybridconv.reports import study_figures
from hybridconv.reports.study_arms import (
  SIZE_KEY,
  arm_groups,
  arm_name,
  fmt,
  md_table,
  train_images,
  train_size_text,
)
from hybridconv.run_layout import IMAGE_STATISTICS_FILE
from hybridconv.studies import stats
from hybridconv.tracking import snapshots


def _representative(members):
  members = [r for r in members if snapshots.read_snapshot(r.path)]
  if not members:
    return None
  largest = max(train_images(r) for r in members)
  return min(
    (r for r in members if train_images(r) == largest),
    key=lambda r: (str(r.flat.get("seed")), r.path),
  )


def _spatial(kernel: np.ndarray) -> np.ndarray:
  """``(kh, kw, n)`` display filters: the input-channel mean of HWIO kernels."""
  return kernel.mean(axis=2) if kernel.ndim == 4 else kernel


def run_label(name: str, run) -> str:
  """``'free, 55,000 images, seed 0'``: which run a mosaic row shows (arms differ in size)."""
  return f"{name}, {train_images(run):,} images, seed {run.flat.get('seed')}"


def filters_figure(runs, arms, has_sizes, fig_dir):
  """One arm's representative run per row pair: its final filters and their change."""
  rows = {}
  for name, members in arms.items():
    run = _representative(members)
    if run is None:
      continue
    snap = snapshots.read_snapshot(run.path)
    final = _spatial(snap["final/kernel"])
    label = run_label(name, run)
    rows[f"{label}: end"] = final
    change = final - _spatial(snap["initial/kernel"])
    if np.abs(change).max() > 1e-7:
      rows[f"{label}: change"] = change
  if not rows:
    return None
  return study_figures.kernel_mosaic(
    rows,
    title="First-layer filters at the end of training",
    path=os.path.join(fig_dir, "first_layer_filters.png"),
  )


def likeness_figure(out, runs, arm_factors, has_sizes, fig_dir):
  from hybridconv.studies import likeness  # noqa: PLC0415  (JAX)

  scores = {r.path: likeness.run_likeness(r.path) for r in runs}
  scored = [r for r in runs if scores[r.path]]
  if not scored:
    return None, []
  kernel_size = tuple(scores[scored[0].path]["kernel_size"])
  width = len(scores[scored[0].path]["final"]["r2"])
  control = likeness.positive_control(kernel_size, width, cache_dir=out)
  table_rows, by_size = [], {}
  groups = arm_groups(scored, arm_factors + ([SIZE_KEY] if has_sizes else []))
  for name, members in groups.items():
    initial = [scores[r.path]["initial"]["frac_above_null_p95"] for r in members]
    final = [scores[r.path]["final"]["frac_above_null_p95"] for r in members]
    r2 = [scores[r.path]["final"]["r2_mean"] for r in members]
    size = train_images(members[0]) if has_sizes else 0
    by_size.setdefault(size, {})[arm_name(members[0], arm_factors)] = {
      "initial": initial,
      "final": final,
    }
    start, end = stats.t_interval(initial), stats.t_interval(final)
    table_rows.append(
      [
        name,
        str(len(members)),
        fmt(start.mean, 2),
        f"{fmt(start.ci_low, 2)}–{fmt(start.ci_high, 2)}",
        fmt(end.mean, 2),
        f"{fmt(end.ci_low, 2)}–{fmt(end.ci_high, 2)}",
        fmt(float(np.mean(r2)), 3),
      ]
    )
  null_median = float(np.median([scores[r.path]["final"]["null_r2_median"] for r in scored]))
  path = study_figures.likeness_plot(
    {train_size_text(s) if has_sizes else "all runs": by_size[s] for s in sorted(by_size)},
    control=control["frac_above_null_p95"],
    null_median=null_median,
    title=f"Gabor-likeness, {kernel_size[0]}x{kernel_size[1]} first-layer filters",
    path=os.path.join(fig_dir, "gabor_likeness.png"),
  )
  table = md_table(
    [
      "arm",
      "n",
      "start: frac. > null p95",
      "95% CI",
      "end: frac. > null p95",
      "95% CI",
      "end: mean R²",
    ],
    table_rows,
  )
  table += [
    f"Positive control (fixed Gabor bank, {kernel_size[0]}x{kernel_size[1]}): "
    f"{fmt(control['frac_above_null_p95'], 2)} of filters above its null's 95th "
    f"percentile, mean R² {fmt(control['r2_mean'], 3)}; null median R² over runs "
    f"{fmt(null_median, 3)}.",
    "",
  ]
  return path, table


def _gabor_values(snapshot: Mapping[str, np.ndarray], when: str, name: str) -> np.ndarray:
  keys = sorted(k for k in snapshot if k.startswith(f"{when}/gabor/") and k.endswith(f"/{name}"))
  return np.concatenate([np.ravel(snapshot[k]) for k in keys]) if keys else np.zeros(0)


def gabor_parameters_figure(out, runs, arms, fig_dir):
  theta_rows, frequency_pairs = {}, {}
  for name, members in arms.items():
    for run in members:
      snap = snapshots.read_snapshot(run.path)
      before, after = _gabor_values(snap, "initial", "theta"), _gabor_values(snap, "final", "theta")
      if not len(after):
        continue
      theta_rows.setdefault(name, [[], []])
      theta_rows[name][0].append(np.mod(before, np.pi))
      theta_rows[name][1].append(np.mod(after, np.pi))
      size = str(train_images(run))
      f0 = _gabor_values(snap, "initial", "frequency")
      f1 = _gabor_values(snap, "final", "frequency")
      pair = frequency_pairs.setdefault(f"{size} images", [[], []])
      pair[0].append(f0)
      pair[1].append(f1)
  if not theta_rows:
    return None
  image_energy = image_frequency = None
  try:
    with open(os.path.join(out, IMAGE_STATISTICS_FILE), encoding="utf-8") as f:
      statistics = json.load(f)
    image_energy = statistics["orientation_energy"]
    if "frequency_edges" in statistics:
      image_frequency = (statistics["frequency_edges"], statistics["frequency_energy"])
  except (OSError, ValueError, KeyError):
    pass
  theta = {name: (np.concatenate(b), np.concatenate(a)) for name, (b, a) in theta_rows.items()}
  frequency = {
    size: (np.concatenate(b), np.concatenate(a)) for size, (b, a) in frequency_pairs.items()
  }
  return study_figures.gabor_parameters(
    theta,
    frequency,
    image_energy,
    path=os.path.join(fig_dir, "gabor_parameters.png"),
    image_frequency=image_frequency,
  )


def filter_movement_rows(arms) -> list[list[str]]:
  """Per learned arm and size: relative change of each first-layer filter, median and 90th pct."""
  rows = []
  for name, members in arms.items():
    by_size: dict[int, list[np.ndarray]] = {}
    for run in members:
      snap = snapshots.read_snapshot(run.path)
      if "initial/kernel" not in snap or "final/kernel" not in snap:
        continue
      start, end = snap["initial/kernel"], snap["final/kernel"]
      start, end = start.reshape(-1, start.shape[-1]), end.reshape(-1, end.shape[-1])
      norms = np.linalg.norm(start, axis=0)
      change = np.linalg.norm(end - start, axis=0) / np.where(norms > 0, norms, 1.0)
      by_size.setdefault(train_images(run), []).append(change)
    for size in sorted(by_size):
      change = np.concatenate(by_size[size])
      if not change.any():
        continue  # frozen: every filter exactly where it started
      rows.append(
        [
          name,
          str(size),
          str(len(change)),
          f"{100 * np.median(change):.1f}",
          f"{100 * np.percentile(change, 90):.1f}",
        ]
      )
  return rows


def gabor_movement_rows(runs) -> list[list[str]]:
  """Per training size: how far learnable Gabor parameters moved (pooled over arms and seeds)."""
  moved: dict[int, tuple[list, list]] = {}
  for run in runs:
    snap = snapshots.read_snapshot(run.path)
    f0, f1 = _gabor_values(snap, "initial", "frequency"), _gabor_values(snap, "final", "frequency")
    t0, t1 = _gabor_values(snap, "initial", "theta"), _gabor_values(snap, "final", "theta")
    if not len(f1):
      continue
    rel, angle = moved.setdefault(train_images(run), ([], []))
    rel.append(np.abs(f1 / f0 - 1))
    angle.append(np.degrees(np.abs(np.mod(t1 - t0 + np.pi / 2, np.pi) - np.pi / 2)))
  rows = []
  for size in sorted(moved):
    rel, angle = (np.concatenate(v) for v in moved[size])
    rows.append(
      [
        str(size),
        str(len(rel)),
        f"{100 * np.median(rel):.1f}",
        f"{100 * np.percentile(rel, 90):.1f}",
        f"{np.median(angle):.1f}",
        f"{np.percentile(angle, 90):.1f}",
        f"{angle.max():.1f}",
      ]
    )
  return rows


def movement_tables(runs, arms) -> list[str]:
  """How far the learnable Gabor parameters and the first-layer filters moved from their start."""
  lines = []
  movement = gabor_movement_rows(runs)
  if movement:
    lines.extend(
      [
        "How far the learnable Gabor parameters moved from their initialisation "
        "(all learnable-Gabor filters of all arms and seeds):",
        "",
      ]
    )
    lines.extend(
      md_table(
        [
          "training images",
          "filters",
          "median abs(f/f0 - 1) %",
          "90th pct %",
          "median abs(theta - theta0) deg",
          "90th pct deg",
          "largest deg",
        ],
        movement,
      )
    )
  moved = filter_movement_rows(arms)
  if moved:
    lines += [
      "### How far the first-layer filters moved",
      "",
      "Per filter, the norm of its change from initialisation over the norm of its initial "
      "value (the effective kernel, whatever its source), pooled over seeds; 0 for frozen "
      "kernels. A learned first layer that moves little stays close to its initialisation, "
      "random or Gabor.",
      "",
      *md_table(
        ["arm", "training images", "filters", "median change %", "90th pct %"],
        moved,
      ),
      "",
    ]
  return lines
