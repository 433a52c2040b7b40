"""``REPORT.md`` for a finished run: curves, filter grids, Gabor parameters, R^2.

Reads only what the run wrote into its workdir (see
:mod:`hybridconv.tracking.jsonl_logger`): ``metrics.jsonl``,
``histograms.jsonl``, ``filters/<layer>/step_*.png`` and ``config.json``.
Figures go to ``<workdir>/report/``; the Markdown links them and the filter
PNGs/GIFs by relative paths, so the workdir can be copied or browsed as is.

Usage::

  hybridconv analyze --workdir /tmp/run
  python -m hybridconv.reports.run_report --workdir /tmp/run
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hybridconv import configlib
from hybridconv.kernels.gabor import GABOR_PARAMETERS
from hybridconv.reports import robustness
from hybridconv.reports import run_figures as plots
from hybridconv.run_layout import FILTERS_DIR, REPORT_FIGURES_DIR, REPORT_FILE
from hybridconv.tracking import images
from hybridconv.tracking import jsonl_logger as jsonl

CONFIG_KEYS = (
  "model.name",
  "model.first_layer",
  "model.kernels",
  "model.width",
  "data.name",
  "data.train_size",
  "data.validation_size",
  "optim.name",
  "optim.learning_rate",
  "batch_size",
  "train_for",
  "seed",
)
RESULT_KEYS = ("eval/accuracy", "eval/top5_accuracy", "eval/loss", "train/accuracy", "train/loss")


def _slug(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


def _lookup(config: Mapping[str, Any], dotted: str) -> Any:
  value: Any = config
  for part in dotted.split("."):
    if not isinstance(value, Mapping) or part not in value:
      return None
    value = value[part]
  return value


def layer_frames(workdir: str) -> dict[str, list[tuple[int, str]]]:
  """``{layer: [(step, png path), ...]}`` for every layer with logged filter images."""
  base = os.path.join(workdir, FILTERS_DIR)
  found = {}
  if os.path.isdir(base):
    for directory, _, _ in sorted(os.walk(base)):
      frames = images.frame_steps(directory)
      if frames and directory != base:
        found[os.path.relpath(directory, base).replace(os.sep, "/")] = frames
  return found


def first_and_last_histograms(workdir: str) -> dict[str, tuple[dict, dict]]:
  """``{name: (first event, last event)}`` by step; a re-logged step keeps the later event."""
  by_name: dict[str, dict[int, dict]] = {}
  for event in jsonl.read_histograms(workdir):
    by_name.setdefault(event["name"], {})[int(event["step"])] = event
  return {name: (events[min(events)], events[max(events)]) for name, events in by_name.items()}


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
  def cell(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)

  return (
    ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    + [""]
  )


def _config_section(workdir: str) -> list[str]:
  path = os.path.join(workdir, jsonl.CONFIG_FILE)
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    config = configlib.upgrade(json.load(f))  # older runs' keys spelt as now
  rows = [
    (f"`{k}`", f"`{json.dumps(v)}`") for k in CONFIG_KEYS if (v := _lookup(config, k)) is not None
  ]
  return ["## Configuration", ""] + _table(["key", "value"], rows) if rows else []


def _results_section(metrics, fig_dir: str) -> list[str]:
  lines = ["## Results", ""]
  rows = []
  for key in RESULT_KEYS:
    if key in metrics:
      steps, values = metrics[key]
      best = np.nanmax(values) if "accuracy" in key else np.nanmin(values)
      rows.append((f"`{key}`", int(steps[-1]), float(values[-1]), float(best)))
  if rows:
    lines += _table(["metric", "last step", "final", "best"], rows)
  curve = plots.training_curves(metrics, os.path.join(fig_dir, "curves.png"))
  if curve:
    lines += [f"![training curves]({REPORT_FIGURES_DIR}/curves.png)", ""]
  return lines if len(lines) > 2 else []


def _filters_section(workdir: str, frames, metrics, fig_dir: str) -> list[str]:
  if not frames:
    return []
  lines = [
    "## Filters",
    "",
    "Each tile is one output filter, normalised on its own with zero as mid-grey; "
    "3-channel filters in colour, others by their dominant spatial component "
    "(`hybridconv.tracking.images`). Left: first summary, right: last.",
    "",
  ]
  for layer, layer_frames_ in frames.items():
    figure = plots.first_and_last(
      layer_frames_, layer, os.path.join(fig_dir, f"filters_{_slug(layer)}.png")
    )
    lines += [
      f"### `{layer}`",
      "",
      f"![{layer} filters]({REPORT_FIGURES_DIR}/{os.path.basename(figure)})",
      "",
    ]
    gif = os.path.join(workdir, FILTERS_DIR, layer + images.GIF_SUFFIX)
    if os.path.exists(gif):
      lines += [
        f"Animation over {len(layer_frames_)} summaries: [filters/{layer}.gif]"
        f"(filters/{layer}.gif)",
        "",
      ]
    changes = images.frame_steps(os.path.join(workdir, "filters_change", layer))
    if changes:
      step, png = changes[-1]
      link = os.path.relpath(png, workdir).replace(os.sep, "/")
      lines += [
        f"Change since the first summary, at step {step} (one scale for all tiles, "
        "written under the grid):",
        "",
        f"![{layer} change]({link})",
        "",
      ]
    key = f"filters/{layer}/orientation_selectivity"
    if key in metrics:
      values = metrics[key][1]
      lines += [
        f"Mean orientation selectivity: {values[0]:.3f} at the start, "
        f"{values[-1]:.3f} at the end (0 isotropic, 1 a single orientation).",
        "",
      ]
  return lines


def gabor_groups(histograms: Mapping[str, Any]) -> dict[str, tuple[list[str], list[str]]]:
  """``{group: (learned parameters, fixed parameters)}`` from the histogram names.

  Learned parameters are logged as ``gabor/<group>/<param>``, fixed ones as
  ``gabor/<group>/fixed/<param>`` (:mod:`hybridconv.tracking.filters`).
  """
  groups: dict[str, tuple[list[str], list[str]]] = {}
  for name in sorted(histograms):
    head, _, param = name.rpartition("/")
    if not name.startswith("gabor/") or param not in GABOR_PARAMETERS:
      continue
    group = head[len("gabor/") :]
    is_fixed = group.endswith("/fixed")
    group = group[: -len("/fixed")] if is_fixed else group
    groups.setdefault(group, ([], []))[int(is_fixed)].append(param)
  order = GABOR_PARAMETERS.index
  return {
    g: (sorted(learned, key=order), sorted(fixed, key=order))
    for g, (learned, fixed) in groups.items()
  }


def _gabor_section(histograms, metrics, fig_dir: str) -> list[str]:
  groups = gabor_groups(histograms)
  if not groups:
    return []
  lines = [
    "## Gabor parameters",
    "",
    "Constrained values (theta in [0, pi) and psi in radians, frequency in cycles/pixel, "
    "sigma in pixels) at the first and last summary; parameters the source does not learn "
    "are marked fixed. Drift is the mean |change| since the first summary: in radians "
    "for theta (wrapped modulo pi) and psi, relative (|p / p0 - 1|) for frequency, sigma "
    "and gamma, on separate axes.",
    "",
  ]
  for group, (learned, fixed) in groups.items():
    first = {p: histograms[f"gabor/{group}/{p}"][0] for p in learned}
    last = {p: histograms[f"gabor/{group}/{p}"][1] for p in learned}
    fixed_last = {p: histograms[f"gabor/{group}/fixed/{p}"][1] for p in fixed}
    figure = plots.parameter_histograms(
      first, last, group, os.path.join(fig_dir, f"gabor_{_slug(group)}.png"), fixed=fixed_last
    )
    name = os.path.basename(figure)
    lines += [f"### `{group}`", "", f"![{group} parameters]({REPORT_FIGURES_DIR}/{name})", ""]
    if fixed:
      lines += [f"Fixed (not learned): {', '.join(fixed)}.", ""]
    drift = {
      p: metrics[f"gabor/{group}/drift/{p}"]
      for p in learned
      if f"gabor/{group}/drift/{p}" in metrics
    }
    if drift:
      final = [(p, float(series[1][-1])) for p, series in drift.items()]
      lines += _table(["parameter", "final drift"], final)
      figure = plots.drift(
        drift, f"{group} drift", os.path.join(fig_dir, f"gabor_drift_{_slug(group)}.png")
      )
      lines += [f"![{group} drift]({REPORT_FIGURES_DIR}/{os.path.basename(figure)})", ""]
  return lines


def _likeness_section(metrics, fig_dir: str) -> list[str]:
  layers: dict[str, dict[str, tuple]] = {}
  for key, series in metrics.items():
    match = re.fullmatch(
      r"gabor_fit/(.+)/(r2_\w+|null_r2_\w+|frac_r2_above_[\d.]+|spatial_r2_mean)", key
    )
    if match:
      layers.setdefault(match.group(1), {})[match.group(2)] = series
  layers = {k: v for k, v in layers.items() if "r2_median" in v}
  if not layers:
    return []
  lines = [
    "## Gabor-likeness of learned kernels",
    "",
    "R^2 is the fraction of a filter's variance explained by the best-fitting Gabor "
    "(`hybridconv.analysis.gabor_fit`; colour filters as a Gabor times a colour). 1 is a "
    "Gabor, but noise does not score 0: few pixels per fitted parameter let a Gabor "
    "explain much of a random filter. The null band (hatched, dashed median) is the same "
    "fitter's R^2 for phase-randomised copies of the layer's filters at each summary -- "
    "same shape, same power spectrum, no spatial structure "
    "(`hybridconv.analysis.gabor_null`); the filters are Gabor-like as far as their "
    "score sits above it. A filter with many input channels scores low unless one "
    "spatial pattern dominates all of them; spatial R^2 scores that dominant pattern "
    "alone.",
    "",
  ]
  rows = []
  for layer, stats in layers.items():
    for at, index in (("first", 0), ("last", -1)):
      rows.append(
        (
          f"`{layer}`",
          at,
          int(stats["r2_median"][0][index]),
          *(
            float(stats[k][1][index]) if k in stats else ""
            for k in (
              "r2_mean",
              "r2_median",
              "null_r2_median",
              "frac_r2_above_0.5",
              "frac_r2_above_0.8",
              "spatial_r2_mean",
            )
          ),
        )
      )
  lines += _table(
    [
      "layer",
      "summary",
      "step",
      "R^2 mean",
      "R^2 median",
      "null R^2 median",
      "frac > 0.5",
      "frac > 0.8",
      "spatial R^2 mean",
    ],
    rows,
  )
  plots.gabor_likeness(layers, os.path.join(fig_dir, "gabor_likeness.png"))
  lines += [f"![R^2 over training]({REPORT_FIGURES_DIR}/gabor_likeness.png)", ""]
  return lines


def write_report(workdir: str) -> str:
  """Writes ``REPORT.md`` and its figures into ``workdir``; returns the report's path.

  Raises:
    ValueError: if ``workdir`` holds neither ``metrics.jsonl`` nor filter images.
  """
  workdir = os.path.abspath(workdir)
  metrics = jsonl.read_metrics(workdir) if os.path.isdir(workdir) else {}
  frames = layer_frames(workdir)
  if not metrics and not frames:
    raise ValueError(
      f"--workdir={workdir!r} holds no run: expected {jsonl.METRICS_FILE} or "
      "filters/<layer>/step_*.png written by a hybridconv training run"
    )
  fig_dir = os.path.join(workdir, REPORT_FIGURES_DIR)
  os.makedirs(fig_dir, exist_ok=True)
  histograms = first_and_last_histograms(workdir)
  # No absolute path anywhere: the report and its links stay valid when the
  # workdir is copied, archived or browsed elsewhere.
  lines = [
    f"# Run report: {os.path.basename(workdir)}",
    "",
    "Written by `hybridconv analyze` into the run's workdir; every path below is relative to it.",
    "",
  ]
  lines += _config_section(workdir)
  lines += _results_section(metrics, fig_dir)
  lines += _filters_section(workdir, frames, metrics, fig_dir)
  lines += _gabor_section(histograms, metrics, fig_dir)
  lines += _likeness_section(metrics, fig_dir)
  lines += robustness.report_section(
    workdir, fig_dir, REPORT_FIGURES_DIR
  )  # robustness.json, if any
  path = os.path.join(workdir, REPORT_FILE)
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines))
  return path


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description="Markdown report of a finished hybridconv run.")
  parser.add_argument("--workdir", required=True, help="the run's directory")
  args = parser.parse_args(argv)
  try:
    path = write_report(args.workdir)
  except ValueError as error:  # one line, as every entry point (not argparse's usage block)
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(path)
  return 0


def run() -> None:
  """Entry for ``hybridconv analyze`` (arguments from ``sys.argv``)."""
  raise SystemExit(main(sys.argv[1:]))


if __name__ == "__main__":
  run()
