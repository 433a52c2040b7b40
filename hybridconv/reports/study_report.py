"""``STUDY.md``: its frame -- method, provenance, unfinished runs -- and the order of its sections.

The sections come from :mod:`~hybridconv.reports.study_tables`,
:mod:`~hybridconv.reports.review_tables`, :mod:`~hybridconv.reports.study_curves` and
:mod:`~hybridconv.reports.study_filters`; the numbers from the study table
(:class:`hybridconv.studies.compare.Study`).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence

from hybridconv.reports import (
  review_tables,
  study_curves,
  study_filters,
  study_tables,
)
from hybridconv.reports.study_arms import SIZE_KEY, arm_groups
from hybridconv.run_layout import FIGURES_DIR, STUDY_FILE
from hybridconv.studies import compare, records
from hybridconv.training import provenance


def write_study(
  out: str,
  study: compare.Study,
  *,
  figures: bool,
  likeness: bool,
  command: str = "hybridconv compare",
) -> str:
  """Writes ``STUDY.md`` (and figures under ``figures/``) in ``out``; returns its path.

  ``command`` is the ``hybridconv compare`` line that regenerates the report;
  the study's unfinished runs are only listed.
  """
  runs, factors = study.runs, study.factors
  arm_factors = [k for k in factors if k != SIZE_KEY]
  lines = [
    "# Study report",
    "",
    f"{len(runs)} runs ({sum(r.finished for r in runs)} finished"
    + (f"; {len(study.unfinished)} unfinished, listed at the end" if study.unfinished else "")
    + ") under "
    f"`{os.path.basename(out) or out}`"
    + (f", from the study `{study.plan.get('spec')}`" if study.plan else "")
    + ".",
    "",
    f"Regenerate with `{command}`.",
    "",
  ]
  lines += _method_section(study)
  lines += study_tables.results_section(study.groups, factors, study.reference, runs)
  lines += review_tables.per_seed_section(study.groups, factors)
  lines += review_tables.arms_section(runs, arm_factors)
  lines += review_tables.budget_section(runs)
  lines += study_tables.parameters_section(arm_groups(runs, arm_factors))
  if figures:
    _remove_old_figures(os.path.join(out, FIGURES_DIR))
    lines += study_curves.forest_section(out, study.paired, factors, study.reference)
    lines += _figures_section(out, runs, factors, arm_factors, SIZE_KEY in factors, likeness)
  lines += _provenance_section(runs)
  lines += _unfinished_section(out, study.unfinished)
  path = os.path.join(out, STUDY_FILE)
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines))
  return path


def _remove_old_figures(fig_dir: str) -> None:
  """Deletes the figures of an earlier report, so that one this report no longer draws (a
  retired figure, a reading the runs no longer have) does not linger beside the new ones."""
  if os.path.isdir(fig_dir):
    for name in os.listdir(fig_dir):
      if name.endswith(".png"):
        os.remove(os.path.join(fig_dir, name))


def _method_section(study: compare.Study) -> list[str]:
  """How the groups were formed and compared, and keys that differ without splitting them."""
  reference = study.reference
  lines = [
    "## Method",
    "",
    f"- Groups: the factors {', '.join(f'`{k}`' for k in study.factors) or '(none)'}; the seed "
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
  neutral = compare.neutral_differences(study.runs)
  if neutral:
    lines.append(
      "- Note: the runs differ in keys that cannot change what a run learns (cadences of "
      "logging, evaluation and checkpoints, devices, tracking, robustness settings), which do "
      f"not split the groups: {', '.join(f'`{k}`' for k in neutral)}."
    )
  return lines + [""]


def _unfinished_section(out: str, unfinished: Sequence[records.RunRecord]) -> list[str]:
  if not unfinished:
    return []
  names = [os.path.relpath(r.path, out) for r in unfinished]
  return [
    "## Unfinished runs",
    "",
    f"{len(names)} run(s) have not reached their last step and are left out of every table "
    "and figure: " + ", ".join(f"`{n}`" for n in names[:30]),
    "",
  ]


def _provenance_section(runs: Sequence[records.RunRecord]) -> list[str]:
  commits, version_sets, devices, hosts = {}, {}, {}, {}
  for run in runs:
    for start in run.starts or [{}]:
      cpu = start.get("cpu") or {}
      host = start.get("host", "?") + (
        f" ({cpu.get('model')}, {cpu.get('cores')} core(s) per run)" if cpu else ""
      )
      hosts.setdefault(host, set()).add(run.path)
      commits.setdefault(provenance.code_state(start), set()).add(run.path)
      versions = json.dumps(start.get("versions") or {}, sort_keys=True)
      version_sets.setdefault(versions, set()).add(run.path)
      dev = start.get("devices") or {}
      devices.setdefault(f"{dev.get('count', '?')} x {dev.get('kind', '?')}", set()).add(run.path)
  lines = ["## What produced these runs", ""]
  lines += [f"- code: {', '.join(f'`{c}` ({len(p)} runs)' for c, p in commits.items())}"]
  lines += [f"- hosts: {', '.join(f'{h} ({len(p)} runs)' for h, p in hosts.items())}"]
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


def _figures_section(out, runs, factors, arm_factors, has_sizes, likeness) -> list[str]:
  """Every figure with its caption, in reading order (a figure with nothing to draw is left
  out), and the tables that belong beside them."""
  fig_dir = os.path.join(out, FIGURES_DIR)
  lines = ["## Figures", ""]

  def add(title: str, path: str | None, caption: str) -> None:
    if path:
      lines.extend(
        [f"### {title}", "", f"![{title}]({os.path.relpath(path, out)})", "", caption, ""]
      )

  arms = arm_groups(runs, arm_factors)
  if has_sizes:
    add(
      "Accuracy against training-set size",
      study_curves.accuracy_vs_size_figure(arms, fig_dir),
      "Each line is an arm (one colour and line style per arm in every curve figure); the "
      "band is the 95% t-interval over seeds.",
    )
  add(
    "Validation accuracy against training images seen",
    study_curves.images_seen_figure(runs, arms, has_sizes, fig_dir),
    "Validation accuracy (the split held out of the training images) at each evaluation, "
    "against the training images seen so far, mean over seeds with its 95% band; one panel "
    "per training-set size. The budget-matched reading is a vertical slice; the end of each "
    "line is the converged reading.",
  )
  add(
    "Evaluation curves",
    study_curves.curves_figure(runs, arms, has_sizes, fig_dir),
    "Test accuracy at each evaluation during training, mean over seeds with its 95% band; one "
    "panel per training-set size. Drawn only where the test split is read during training: "
    "with a validation hold-out it is read once, at the end, and the curves are the "
    "validation's.",
  )
  add(
    "Training loss",
    study_curves.curves_figure(
      runs, arms, has_sizes, fig_dir, key="train/loss", label="training loss"
    ),
    "Training loss (mean of the logged interval) during training, mean over seeds with its 95% "
    "band: whether every arm reached its plateau within the budget.",
  )
  add(
    "First-layer filters",
    study_filters.filters_figure(runs, arms, has_sizes, fig_dir),
    "Each row is one run, named with its arm, training images and seed (the arm's lowest "
    "seed at the largest training set it has, so rows may differ in size): final filters, "
    "then for learned arms the change since initialisation (each tile scaled on its own, "
    "zero mid-grey; blue is the gap between tiles).",
  )
  if likeness:
    path, table = study_filters.likeness_figure(out, runs, arm_factors, has_sizes, fig_dir)
    add(
      "Gabor-likeness of first-layer filters",
      path,
      "Fraction of a run's first-layer filters whose Gabor-fit R² exceeds the 95th percentile "
      "of its own null (phase-randomised surrogates: same power spectrum, no spatial "
      "structure), at the start and the end of training; mean over seeds with 95% CI, one "
      "panel per training-set size. The positive control is the fixed Gabor bank at the same "
      "filter size.",
    )
    lines += table
  add(
    "Where the learnable Gabor parameters went",
    study_filters.gabor_parameters_figure(out, runs, arms, fig_dir),
    "Orientation (left): share of filters per orientation bin at the start and the end, "
    "pooled over seeds and sizes, beside the share of the training images' spectral energy per "
    "orientation (7x7 patches; `image_statistics.json`, when present). Frequency (middle): each "
    "filter's final against its initial frequency (cycles/pixel), one colour per training size. "
    "Frequency bands (right, with `image_statistics.json`): share of filters per band at the "
    "start and the end per training size, beside the images' share of spectral energy per band.",
  )
  lines += study_filters.movement_tables(runs, arms)
  add(
    "Robustness",
    study_curves.robustness_figure(runs, arms, has_sizes, fig_dir),
    "Accuracy against corruption level per family, mean over seeds with 95% band.",
  )
  return lines
