"""The result tables of ``STUDY.md``: final test accuracy, robustness, parameters per arm.

Read from the study table's groups (:class:`hybridconv.studies.compare.Group`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from hybridconv import configlib
from hybridconv.reports.study_arms import md_table, pct
from hybridconv.studies import compare, grid, model_size, records, stats


def results_section(
  groups: Sequence[compare.Group],
  factors: Sequence[str],
  reference: tuple[str, Any] | None,
  runs: Sequence[records.RunRecord],
) -> list[str]:
  """Final test accuracy per group (and against the reference), then robustness per group."""
  header = [k.split(".")[-1] for k in factors] + ["n", "mean acc. %", "sd", "95% CI"]
  if reference:
    header += ["diff vs ref (points)", "95% CI of diff", "wins", "p (Holm)"]
  rows = []
  for group in groups:
    final = group.final
    cells = _level_cells(group, factors) + [
      str(final.n),
      pct(final.mean),
      pct(final.std),
      f"{pct(final.ci_low)}–{pct(final.ci_high)}" if final.n > 1 else "",
    ]
    if reference:
      cells += _difference_cells(group)
    rows.append(cells)
  lines = ["## Final test accuracy", ""] + md_table(header, rows)
  robust = robustness_families(runs)
  if robust:
    header = [k.split(".")[-1] for k in factors] + ["n"] + [f"{f} %" for f in robust]
    rows = [
      _level_cells(group, factors)
      + [str(group.robustness_n)]
      + [_robustness_cell(group.robustness.get(f)) for f in robust]
      for group in groups
      if group.robustness
    ]
    lines += ["## Robustness (mean accuracy over each family's levels, 95% CI)", ""]
    lines += md_table(header, rows)
    if reference:
      lines += _robustness_diff_table(groups, factors, reference, robust)
  return lines


def _level_cells(group: compare.Group, factors: Sequence[str]) -> list[str]:
  return [grid.cell(k, v) for k, v in zip(factors, group.levels, strict=True)]


def _difference_cells(group: compare.Group) -> list[str]:
  """The difference to the reference: mean, CI, wins, Holm-adjusted p (in points)."""
  if group.is_reference:
    return ["reference", "", "", ""]
  diff = group.diff
  if diff is None or not diff.n:
    return ["no shared seeds", "", "", ""]
  return [
    pct(diff.mean),
    f"{pct(diff.ci_low)}–{pct(diff.ci_high)}" if diff.n > 1 else "",
    _wins_text(diff),
    _p_text(group.diff_p_holm),
  ]


def _robustness_cell(interval: stats.Summary | None) -> str:
  """``mean (low–high)`` in percent; blanks where the group has no such results."""
  if interval is None:
    return f"{pct(None)} ({pct(None)}–{pct(None)})"
  return f"{pct(interval.mean)} ({pct(interval.ci_low)}–{pct(interval.ci_high)})"


def robustness_families(runs: Sequence[records.RunRecord]) -> list[str]:
  """The robustness families the runs were evaluated on, from their records."""
  return sorted({f for run in runs for f in compare.robustness_summary(run)})


def _robustness_diff_table(
  groups: Sequence[compare.Group],
  factors: Sequence[str],
  reference: tuple[str, Any],
  families: Sequence[str],
) -> list[str]:
  """Paired robustness differences against the reference arm, one cell per family."""
  rows = []
  for group in groups:
    cells = []
    for family in families:
      diff = group.robustness_diff.get(family)
      if diff is None or not diff.n:
        cells.append("")
        continue
      interval = f" ({pct(diff.ci_low)} to {pct(diff.ci_high)})" if diff.n > 1 else ""
      p = group.robustness_p_holm.get(family, math.nan)
      cells.append(f"{pct(diff.mean)}{interval}, {_wins_text(diff)}, p {_p_text(p)}")
    if any(cells):
      rows.append(_level_cells(group, factors) + cells)
  if not rows:
    return []
  header = [k.split(".")[-1] for k in factors] + [f"{f} diff" for f in families]
  return [
    "",
    "Against the reference arm: paired difference in accuracy under each family, in points (arm "
    "minus reference, per seed; the plain difference, not net of the clean one), its 95% CI, "
    "the seeds the arm wins, and the Holm-adjusted p over the arms compared at one training "
    "size for that family (the rule `FINDINGS.md` applies to each reading). Read each family "
    "beside `clean`: a difference no larger than the clean one is not extra robustness; "
    "`FINDINGS.md` states the difference beyond the clean one, a different quantity.",
    "",
    *md_table(header, rows),
  ]


def _wins_text(diff: stats.PairedDifference) -> str:
  """``wins/n``, with the tied seeds when there are any (a tie is neither a win nor a loss)."""
  ties = stats.tied(diff.n, diff.wins, diff.losses)
  return f"{diff.wins}/{diff.n}" + (f" ({ties} tied)" if ties else "")


def _p_text(p: float) -> str:
  """Two significant digits, as ``FINDINGS.md`` writes p (fixed decimals print 1e-5 as 0.00)."""
  return "" if math.isnan(p) else f"{p:.2g}"


def parameters_section(arms) -> list[str]:
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
    *md_table(["arm", "learned (model)", "learned (first layer)", "frozen (first layer)"], rows),
    "",
  ]
