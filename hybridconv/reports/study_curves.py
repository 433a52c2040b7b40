"""The figures of ``STUDY.md`` drawn over runs: paired differences, accuracy against size and
images seen, curves during training, robustness.

Each function draws one figure under ``figures/`` and returns its path (None when
the runs hold nothing to draw), or the Markdown lines of its section.
"""

from __future__ import annotations

import math
import os

from hybridconv.reports import findings, forest_plot, study_figures
from hybridconv.reports.study_arms import SIZE_KEY, train_images, train_size_text
from hybridconv.run_layout import FIGURES_DIR
from hybridconv.studies import grid, readings


def forest_section(out, paired, factors, reference) -> list[str]:
  """The main figure: each arm's paired difference to the reference with its 95% CI, per size."""
  if not reference or not paired:
    return []
  arm_key = reference[0]
  panels: dict[str, dict[str, dict[str, forest_plot.Row]]] = {}
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
      row["p_holm"],
    )
  if not panels:
    return []
  order = sorted({row.get(SIZE_KEY) for row in paired}, key=lambda v: (not v, v or 0))
  titles = [train_size_text(size) for size in order] if SIZE_KEY in factors else ["all runs"]
  panels = {title: panels[title] for title in titles if title in panels}
  path = forest_plot.forest(
    panels,
    reference=grid.label(reference[1]),
    path=os.path.join(out, FIGURES_DIR, "paired_differences.png"),
    alpha=findings.ALPHA,
  )
  return [
    "## Paired differences to the reference",
    "",
    f"![paired differences]({os.path.relpath(path, out)})",
    "",
    f"Each arm's difference to `{reference[1]}` in accuracy points (arm minus reference, per "
    "seed), mean with its 95% paired t-interval, one panel per training size: filled, final "
    "test accuracy; hollow, validation accuracy after the first eighth of the budget (which "
    "arm learns faster). Blue (ahead) or red (behind) only where the difference survives "
    f"Holm's adjustment over the arms at that size (p < {findings.ALPHA:g}, as in "
    "`FINDINGS.md`); dark grey where the interval excludes 0 but the difference does not "
    "survive it; light grey where the interval crosses 0, no detectable difference at this n.",
    "",
  ]


def accuracy_vs_size_figure(arms, fig_dir: str) -> str:
  """Final test accuracy against training images, one line per arm with its 95% band."""
  series = {}
  for name, members in arms.items():
    sizes = sorted({train_images(r) for r in members})
    series[name] = study_figures.band(
      sizes, [[r.final() for r in members if train_images(r) == s] for s in sizes]
    )
  return study_figures.lines_with_bands(
    series,
    title="Final test accuracy (mean, 95% CI)",
    xlabel="training images (log scale)",
    ylabel="test accuracy",
    log_x=True,
    path=os.path.join(fig_dir, "accuracy_vs_size.png"),
    styles=study_figures.group_styles(arms),
  )


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


def test_read_only_at_end(runs) -> bool:
  """Whether the runs hold out a validation split and read the test split once, at the end.

  Their curves during training are the validation's (:func:`images_seen_figure`); a test
  "curve" would be one dot per arm.
  """
  validated = any(len(r.series(readings.VALIDATION_KEY)[0]) for r in runs)
  return validated and all(len(set(r.series("eval/accuracy")[0].tolist())) <= 1 for r in runs)


def curves_figure(runs, arms, has_sizes, fig_dir, key="eval/accuracy", label="test accuracy"):
  """``key`` during training per size panel; no test-accuracy figure where test is read once."""
  if key == "eval/accuracy" and test_read_only_at_end(runs):
    return None
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
    styles=study_figures.group_styles(arms),
  )


def images_seen_figure(runs, arms, has_sizes, fig_dir):
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
    styles=study_figures.group_styles(arms),
  )


def robustness_figure(runs, arms, has_sizes, fig_dir):
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
    styles=study_figures.group_styles(arms),
  )
