"""``STUDY.md`` and its figures from a study's runs (see :mod:`hybridconv.studies.compare`)."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hybridconv import configlib
from hybridconv.run_layout import FIGURES_DIR, STUDY_FILE, SUBSET_FILE
from hybridconv.studies import (
  grid,
  model_size,
  readings,
  records,
  review_tables,
  stats,
  study_figures,
)
from hybridconv.tracking import snapshots

SIZE_KEY = "data.train_size"
FIGURES = FIGURES_DIR


def _fmt(value: Any, digits: int = 4) -> str:
  if isinstance(value, float):
    return "" if math.isnan(value) else f"{value:.{digits}f}"
  return "" if value is None else str(value)


def _pct(value: float) -> str:
  return (
    ""
    if value is None or (isinstance(value, float) and math.isnan(value))
    else f"{100 * value:.2f}"
  )


def train_images(run: records.RunRecord) -> int:
  """Training images a run used (its subset record, else the configured size)."""
  try:
    with open(os.path.join(run.path, SUBSET_FILE), encoding="utf-8") as f:
      return int(json.load(f)["num_examples"])
  except (OSError, ValueError, KeyError):
    return int(run.flat.get(SIZE_KEY) or 0)


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


def _arms(runs, arm_factors) -> dict[str, list[records.RunRecord]]:
  arms: dict[str, list[records.RunRecord]] = {}
  for run in runs:
    arms.setdefault(arm_name(run, arm_factors), []).append(run)
  return arms


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += [
    "| " + " | ".join(_fmt(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows
  ]
  return lines + [""]


def _provenance_section(runs: Sequence[records.RunRecord]) -> list[str]:
  commits, version_sets, devices = {}, {}, {}
  for run in runs:
    for start in run.starts or [{}]:
      git = start.get("git") or {}
      commit = f"{(git.get('commit') or 'unknown')[:10]}{' (dirty)' if git.get('dirty') else ''}"
      commits.setdefault(commit, set()).add(run.path)
      versions = json.dumps(start.get("versions") or {}, sort_keys=True)
      version_sets.setdefault(versions, set()).add(run.path)
      dev = start.get("devices") or {}
      devices.setdefault(f"{dev.get('count', '?')} x {dev.get('kind', '?')}", set()).add(run.path)
  lines = ["## What produced these runs", ""]
  lines += [f"- code: {', '.join(f'`{c}` ({len(p)} runs)' for c, p in commits.items())}"]
  lines += [f"- devices: {', '.join(f'{d} ({len(p)} runs)' for d, p in devices.items())}"]
  for versions, paths in version_sets.items():
    lines.append(f"- versions ({len(paths)} runs): `{versions}`")
  if len(commits) > 1 or len(version_sets) > 1:
    lines.append(
      "- **flag: the runs differ in code commit or library versions** (listed above); "
      "differences between arms may partly reflect them."
    )
  dirty = [c for c in commits if "dirty" in c]
  if dirty:
    lines.append("- **flag: some runs were trained from a working tree with uncommitted changes.**")
  lines.append(f"- report written with Python {platform.python_version()}")
  return lines + [""]


def write_study(
  out: str,
  runs: Sequence[records.RunRecord],
  factors: Sequence[str],
  reference: tuple[str, Any] | None,
  results: Sequence[Mapping[str, Any]],
  summary: Sequence[Mapping[str, Any]],
  *,
  plan: Mapping[str, Any] | None,
  figures: bool,
  likeness: bool,
  command: str = "hybridconv compare",
  unfinished: Sequence[records.RunRecord] = (),
  paired: Sequence[Mapping[str, Any]] = (),
) -> str:
  """Writes ``STUDY.md`` (and figures under ``figures/``) in ``out``; returns its path.

  ``command`` is the ``hybridconv compare`` line that regenerates the report;
  ``unfinished`` runs are only listed.
  """
  arm_factors = [k for k in factors if k != SIZE_KEY]
  has_sizes = SIZE_KEY in factors
  lines = [
    "# Study report",
    "",
    f"{len(runs)} runs ({sum(r.finished for r in runs)} finished) under "
    f"`{os.path.basename(out) or out}`"
    + (f", from the sweep `{plan.get('spec')}`" if plan else "")
    + ".",
    "",
    f"Regenerate with `{command}`.",
    "",
    "## Method",
    "",
    f"- Groups: the factors {', '.join(f'`{k}`' for k in factors) or '(none)'}; the seed "
    "varies within a group (initialisation, data order, augmentation, random kernels "
    "and the training subset all follow it, so seed *s* of every arm sees the same "
    "images in the same order).",
    "- Metric: test accuracy at the end of training (`eval/accuracy`, the whole test "
    "split); `best` is the highest evaluation seen during training (optimistic, shown "
    "for reference only).",
    "- Per group: n, mean, sample standard deviation and a 95% Student-t interval of the "
    "mean (n is small, so no bootstrap).",
  ]
  if reference:
    lines.append(
      f"- Against the reference arm `{reference[0]}={reference[1]}` (within each "
      "level of the other factors): the per-seed differences (arm minus reference), "
      "their mean with a 95% paired t-interval, the seeds the arm wins, and a paired "
      "t-test with Holm's adjustment over the arms compared at each level of the other "
      "factors (each training size). An interval that spans 0 means no detectable "
      "difference at this n, not equality. `FINDINGS.md` states each comparison in one "
      "sentence by fixed rules; `paired.csv` holds every reading (the end, validation "
      "accuracy after parts of the budget, robustness beyond the clean difference)."
    )
  from hybridconv.studies import compare  # noqa: PLC0415 (compare imports this module lazily)

  neutral = compare.neutral_differences(runs)
  if neutral:
    lines.append(
      "- Note: the runs differ in keys that cannot change what a run learns (cadences of "
      "logging, evaluation and checkpoints, devices, tracking, robustness settings), which do "
      f"not split the groups: {', '.join(f'`{k}`' for k in neutral)}."
    )
  lines.append("")
  lines += _results_section(summary, factors, reference, runs)
  lines += review_tables.per_seed_section(summary, runs, factors)
  lines += review_tables.arms_section(runs, arm_factors)
  lines += review_tables.budget_section(runs)
  lines += _parameters_section(_arms(runs, arm_factors))
  if figures:
    lines += _forest_section(out, paired, factors, reference)
    lines += _figures_section(out, runs, factors, arm_factors, has_sizes, likeness)
  lines += _provenance_section(runs)
  if unfinished:
    names = [os.path.relpath(r.path, out) for r in unfinished]
    lines += [
      "## Unfinished runs",
      "",
      f"{len(names)} run(s) have not reached their last step and are left out of every table "
      "and figure: " + ", ".join(f"`{n}`" for n in names[:30]),
      "",
    ]
  path = os.path.join(out, STUDY_FILE)
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines))
  return path


def _forest_section(out, paired, factors, reference) -> list[str]:
  """The main figure: each arm's paired difference to the reference with its 95% CI, per size."""
  if not reference or not paired:
    return []
  arm_key = reference[0]
  panels: dict[str, dict[str, dict[str, tuple[float, float, float]]]] = {}
  early = f"validation, after {readings.BUDGET_FRACTIONS[0]:g} of the budget"
  for row in paired:
    if row["reading"] not in (readings.END_READING, early) or math.isnan(row["ci_low"]):
      continue
    size = row.get(SIZE_KEY)
    title = f"{train_size_text(size)}" if SIZE_KEY in factors else "all runs"
    marker = (
      "end of training (test)"
      if row["reading"] == readings.END_READING
      else (f"after {readings.BUDGET_FRACTIONS[0]:g} of the budget (validation)")
    )
    panels.setdefault(title, {}).setdefault(marker, {})[grid.label(row[arm_key])] = (
      100 * row["mean"],
      100 * row["ci_low"],
      100 * row["ci_high"],
    )
  if not panels:
    return []
  order = sorted({row.get(SIZE_KEY) for row in paired}, key=lambda v: (not v, v or 0))
  titles = [train_size_text(size) for size in order] if SIZE_KEY in factors else ["all runs"]
  panels = {title: panels[title] for title in titles if title in panels}
  path = study_figures.forest(
    panels,
    reference=grid.label(reference[1]),
    path=os.path.join(out, FIGURES, "paired_differences.png"),
  )
  return [
    "## Paired differences to the reference",
    "",
    f"![paired differences]({os.path.relpath(path, out)})",
    "",
    f"Each arm's difference to `{reference[1]}` in accuracy points (arm minus reference, per "
    "seed), mean with its 95% paired t-interval, one panel per training size: filled, final "
    "test accuracy; hollow, validation accuracy after the first eighth of the budget (which "
    "arm learns faster). An interval crossing 0 is no detectable difference at this n.",
    "",
  ]


def train_size_text(size: Any) -> str:
  return "all training images" if not size else f"{int(size):,} training images"


def _parameters_section(arms) -> list[str]:
  """Parameter counts per arm (from its first run's config), when the input shape is known."""
  rows = []
  for name, members in arms.items():
    counts = model_size.parameter_counts(configlib.with_defaults(members[0].config))
    if counts is None:
      return []
    rows.append(
      [
        name,
        f"{counts['learned']:,}",
        f"{counts['first_layer_learned']:,}",
        f"{counts['first_layer_frozen']:,}",
      ]
    )
  if not rows:
    return []
  return [
    "## Parameters per arm",
    "",
    "Learned parameters of the whole model and of its first conv layer (bias included), and the "
    "first layer's frozen values (fixed kernel weights, or a Gabor layer's fixed shape "
    "parameters), counted on the model built from the run's config.",
    "",
    *_md_table(["arm", "learned (model)", "learned (first layer)", "frozen (first layer)"], rows),
    "",
  ]


def robustness_families(runs: Sequence[records.RunRecord]) -> list[str]:
  """The robustness families the runs were evaluated on, from their records (not from the
  summary table's column names)."""
  return sorted({f for run in runs for f in ((run.robustness or {}).get("summary") or {})})


def _results_section(summary, factors, reference, runs) -> list[str]:
  header = [k.split(".")[-1] for k in factors] + ["n", "mean acc. %", "sd", "95% CI"]
  if reference:
    header += ["diff vs ref (points)", "95% CI of diff", "wins", "p (Holm)"]
  rows = []
  for row in summary:
    cells = [grid.cell(k, row.get(k)) for k in factors]
    cells += [
      str(row["n"]),
      _pct(row["mean"]),
      _pct(row["std"]),
      f"{_pct(row['ci_low'])}–{_pct(row['ci_high'])}" if row["n"] > 1 else "",
    ]
    if reference:
      if row.get("is_reference"):
        cells += ["reference", "", "", ""]
      elif row.get("diff_n"):
        cells += [
          _pct(row["diff_mean"]),
          f"{_pct(row['diff_ci_low'])}–{_pct(row['diff_ci_high'])}" if row["diff_n"] > 1 else "",
          str(row["wins"]),
          _fmt(row.get("diff_p_holm", math.nan), 3),
        ]
      else:
        cells += ["no shared seeds", "", "", ""]
    rows.append(cells)
  lines = ["## Final test accuracy", ""] + _md_table(header, rows)
  robust = robustness_families(runs)
  if robust:
    header = [k.split(".")[-1] for k in factors] + ["n"] + [f"{f} %" for f in robust]
    rows = [
      [grid.cell(k, row.get(k)) for k in factors]
      + [str(row.get("robustness_n", ""))]
      + [
        f"{_pct(row.get(f'robustness_{f}_mean', math.nan))} "
        f"({_pct(row.get(f'robustness_{f}_ci_low', math.nan))}–"
        f"{_pct(row.get(f'robustness_{f}_ci_high', math.nan))})"
        for f in robust
      ]
      for row in summary
      if any(f"robustness_{f}_mean" in row for f in robust)
    ]
    lines += ["## Robustness (mean accuracy over each family's levels, 95% CI)", ""]
    lines += _md_table(header, rows)
    if reference:
      lines += _robustness_diff_table(summary, factors, robust)
  return lines


def _robustness_diff_table(summary, factors, families) -> list[str]:
  """Paired robustness differences against the reference arm, one cell per family."""
  rows = []
  for row in summary:
    cells = []
    for family in families:
      prefix = f"diff_robustness_{family}"
      if not row.get(f"{prefix}_n"):
        cells.append("")
        continue
      interval = (
        f" ({_pct(row[f'{prefix}_ci_low'])} to {_pct(row[f'{prefix}_ci_high'])})"
        if row[f"{prefix}_n"] > 1
        else ""
      )
      cells.append(
        f"{_pct(row[f'{prefix}_mean'])}{interval}, {row[f'{prefix}_wins']}, "
        f"p {_fmt(row.get(f'{prefix}_p_holm', math.nan), 2)}"
      )
    if any(cells):
      rows.append([grid.cell(k, row.get(k)) for k in factors] + cells)
  if not rows:
    return []
  header = [k.split(".")[-1] for k in factors] + [f"{f} diff" for f in families]
  return [
    "",
    "Against the reference arm: paired difference in points (arm minus reference, per seed), its "
    "95% CI, the seeds the arm wins, and the Holm-adjusted p over all robustness comparisons. "
    "Read each family beside `clean`: a difference no larger than the clean one is not extra "
    "robustness.",
    "",
    *_md_table(header, rows),
  ]


def _figures_section(out, runs, factors, arm_factors, has_sizes, likeness) -> list[str]:
  fig_dir = os.path.join(out, FIGURES)
  lines = ["## Figures", ""]

  def add(title: str, path: str | None, caption: str) -> None:
    if path:
      lines.extend(
        [f"### {title}", "", f"![{title}]({os.path.relpath(path, out)})", "", caption, ""]
      )

  arms = _arms(runs, arm_factors)
  if has_sizes:
    series = {}
    for name, members in arms.items():
      sizes = sorted({train_images(r) for r in members})
      series[name] = study_figures.band(
        sizes, [[r.final() for r in members if train_images(r) == s] for s in sizes]
      )
    add(
      "Accuracy against training-set size",
      study_figures.lines_with_bands(
        series,
        title="Final test accuracy (mean, 95% CI)",
        xlabel="training images (log scale)",
        ylabel="test accuracy",
        log_x=True,
        path=os.path.join(fig_dir, "accuracy_vs_size.png"),
      ),
      "Each line is an arm; the band is the 95% t-interval over seeds.",
    )
  add(
    "Validation accuracy against training images seen",
    _images_seen_figure(runs, arms, has_sizes, fig_dir),
    "Validation accuracy (the split held out of the training images) at each evaluation, "
    "against the training images seen so far, mean over seeds with its 95% band; one panel "
    "per training-set size. The budget-matched reading is a vertical slice; the end of each "
    "line is the converged reading.",
  )
  add(
    "Evaluation curves",
    _curves_figure(runs, arms, has_sizes, fig_dir),
    "Test accuracy during training, mean over seeds with its 95% band; one panel per "
    "training-set size.",
  )
  add(
    "Training loss",
    _curves_figure(runs, arms, has_sizes, fig_dir, key="train/loss", label="training loss"),
    "Training loss (mean of the logged interval) during training, mean over seeds with its 95% "
    "band: whether every arm reached its plateau within the budget.",
  )
  add(
    "First-layer filters",
    _filters_figure(runs, arms, has_sizes, fig_dir),
    "Each row is an arm (its lowest seed, largest training set): final filters, then for "
    "learned arms the change since initialisation (each tile scaled on its own, zero "
    "mid-grey).",
  )
  if likeness:
    path, table = _likeness_figure(out, runs, arm_factors, has_sizes, fig_dir)
    add(
      "Gabor-likeness of first-layer filters",
      path,
      "Fraction of a run's first-layer filters whose Gabor-fit R² exceeds the 95th percentile "
      "of its own null (phase-randomised surrogates: same power spectrum, no spatial "
      "structure), at the start and the end of training; mean over seeds with 95% CI. The "
      "positive control is the fixed Gabor bank at the same size.",
    )
    lines += table
  add(
    "Where the learnable Gabor parameters went",
    _gabor_parameters_figure(out, runs, arms, fig_dir),
    "Orientation (left): share of filters per orientation bin at the start and the end, "
    "pooled over seeds and sizes, beside the share of the training images' spectral energy per "
    "orientation (7x7 patches; `image_statistics.json`, when present). Frequency (middle): each "
    "filter's final against its initial frequency (cycles/pixel), one colour per training size. "
    "Frequency bands (right, with `image_statistics.json`): share of filters per band at the "
    "start and the end per training size, beside the images' share of spectral energy per band.",
  )
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
      _md_table(
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
      *_md_table(
        ["arm", "training images", "filters", "median change %", "90th pct %"],
        moved,
      ),
      "",
    ]
  add(
    "Robustness",
    _robustness_figure(runs, arms, has_sizes, fig_dir),
    "Accuracy against corruption level per family, mean over seeds with 95% band.",
  )
  return lines


def _size_panels(runs, arms, has_sizes):
  sizes = sorted({train_images(r) for r in runs}) if has_sizes else [None]
  for size in sizes:
    title = f"{size} training images" if size else "all runs"
    yield (
      title,
      {
        name: [r for r in members if size is None or train_images(r) == size]
        for name, members in arms.items()
      },
    )


def _banded_curves(runs, arms, has_sizes, key, *, per_image=False):
  """size panel -> arm -> mean and 95% band over seeds of ``key`` at the steps all seeds logged.

  ``per_image``: x in training images seen (step x batch size) instead of steps.
  """
  panels = {}
  for title, by_arm in _size_panels(runs, arms, has_sizes):
    series = {}
    for name, members in by_arm.items():
      curves = [r.series(key) for r in members if len(r.series(key)[0])]
      if not curves:
        continue
      steps = sorted(set.intersection(*[set(s.tolist()) for s, _ in curves]))
      if not steps:
        continue
      samples = [[float(v[list(s).index(step)]) for s, v in curves] for step in steps]
      scale = int(members[0].flat.get("batch_size") or 1) if per_image else 1
      series[name] = study_figures.band([step * scale for step in steps], samples)
    if series:
      panels[title] = series
  return panels


def _curves_figure(runs, arms, has_sizes, fig_dir, key="eval/accuracy", label="test accuracy"):
  panels = _banded_curves(runs, arms, has_sizes, key)
  if not panels:
    return None
  return study_figures.panels_with_bands(
    panels,
    title=f"{label[0].upper()}{label[1:]} during training",
    xlabel="training step",
    ylabel=label,
    path=os.path.join(fig_dir, "eval_curves.png" if key == "eval/accuracy" else "train_loss.png"),
    sharey=False,
  )


def _images_seen_figure(runs, arms, has_sizes, fig_dir):
  """Validation accuracy against training images seen, per size."""
  panels = _banded_curves(runs, arms, has_sizes, readings.VALIDATION_KEY, per_image=True)
  if not panels:
    return None
  return study_figures.panels_with_bands(
    panels,
    title="Validation accuracy against training images seen",
    xlabel="training images seen",
    ylabel="validation accuracy",
    path=os.path.join(fig_dir, "validation_vs_images.png"),
    sharey=False,
  )


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


def _filters_figure(runs, arms, has_sizes, fig_dir):
  rows = {}
  for name, members in arms.items():
    run = _representative(members)
    if run is None:
      continue
    snap = snapshots.read_snapshot(run.path)
    final = _spatial(snap["final/kernel"])
    rows[f"{name}: end"] = final
    change = final - _spatial(snap["initial/kernel"])
    if np.abs(change).max() > 1e-7:
      rows[f"{name}: change"] = change
  if not rows:
    return None
  return study_figures.kernel_mosaic(
    rows,
    title="First-layer filters at the end of training",
    path=os.path.join(fig_dir, "first_layer_filters.png"),
  )


def _likeness_figure(out, runs, arm_factors, has_sizes, fig_dir):
  from hybridconv.studies import likeness  # noqa: PLC0415  (JAX)

  scores = {r.path: likeness.run_likeness(r.path) for r in runs}
  scored = [r for r in runs if scores[r.path]]
  if not scored:
    return None, []
  kernel_size = tuple(scores[scored[0].path]["kernel_size"])
  width = len(scores[scored[0].path]["final"]["r2"])
  control = likeness.positive_control(kernel_size, width, cache_dir=out)
  table_rows, arms = [], {}
  groups = _arms(scored, arm_factors + ([SIZE_KEY] if has_sizes else []))
  for name, members in groups.items():
    initial = [scores[r.path]["initial"]["frac_above_null_p95"] for r in members]
    final = [scores[r.path]["final"]["frac_above_null_p95"] for r in members]
    r2 = [scores[r.path]["final"]["r2_mean"] for r in members]
    arms[name] = {"initial": initial, "final": final}
    start, end = stats.t_interval(initial), stats.t_interval(final)
    table_rows.append(
      [
        name,
        str(len(members)),
        _fmt(start.mean, 2),
        f"{_fmt(start.ci_low, 2)}–{_fmt(start.ci_high, 2)}",
        _fmt(end.mean, 2),
        f"{_fmt(end.ci_low, 2)}–{_fmt(end.ci_high, 2)}",
        _fmt(float(np.mean(r2)), 3),
      ]
    )
  null_median = float(np.median([scores[r.path]["final"]["null_r2_median"] for r in scored]))
  path = study_figures.likeness_plot(
    arms,
    control=control["frac_above_null_p95"],
    null_median=null_median,
    title=f"Gabor-likeness, {kernel_size[0]}x{kernel_size[1]} first-layer filters",
    path=os.path.join(fig_dir, "gabor_likeness.png"),
  )
  table = _md_table(
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
    f"{_fmt(control['frac_above_null_p95'], 2)} of filters above its null's 95th "
    f"percentile, mean R² {_fmt(control['r2_mean'], 3)}; null median R² over runs "
    f"{_fmt(null_median, 3)}.",
    "",
  ]
  return path, table


def _robustness_figure(runs, arms, has_sizes, fig_dir):
  rated = [r for r in runs if r.robustness and r.robustness.get("entries")]
  if not rated:
    return None
  families = sorted({e["family"] for r in rated for e in r.robustness["entries"]} - {"clean"})
  panels = {}
  sizes = sorted({train_images(r) for r in rated}) if has_sizes else [None]
  for size in sizes:
    for family in families:
      series = {}
      for name, members in arms.items():
        members = [r for r in members if r in rated and (size is None or train_images(r) == size)]
        if not members:
          continue
        levels = sorted(
          {e["level"] for r in members for e in r.robustness["entries"] if e["family"] == family}
        )
        samples = [
          [
            e["accuracy"]
            for r in members
            for e in r.robustness["entries"]
            if e["family"] == family and e["level"] == level
          ]
          for level in levels
        ]
        series[name] = study_figures.band(levels, samples)
      if series:
        panels[f"{family}" + (f", {size} images" if size else "")] = series
  return study_figures.panels_with_bands(
    panels,
    title="Accuracy under corruptions and attacks",
    xlabel="level (family's own unit)",
    ylabel="test accuracy",
    path=os.path.join(fig_dir, "robustness.png"),
  )


def _gabor_values(snapshot: Mapping[str, np.ndarray], when: str, name: str) -> np.ndarray:
  keys = sorted(k for k in snapshot if k.startswith(f"{when}/gabor/") and k.endswith(f"/{name}"))
  return np.concatenate([np.ravel(snapshot[k]) for k in keys]) if keys else np.zeros(0)


def _gabor_parameters_figure(out, runs, arms, fig_dir):
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
    with open(os.path.join(out, "image_statistics.json"), encoding="utf-8") as f:
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
