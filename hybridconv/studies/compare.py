r"""``hybridconv compare``: a study's runs -> STUDY.md, results.csv, summary.csv and figures.

::

  hybridconv compare --workdir runs/study --reference model.first_layer=free
  hybridconv compare --workdir runs/a --workdir runs/b --by model.first_layer --out report/

Groups are the study's factors (from the sweep root's ``sweep.json``, else
every config key that differs between runs) except the seed, or the keys
given with ``--by``. Per group: n, mean, standard deviation and a 95%
Student-t interval of the final test accuracy; against the ``--reference``
arm, per-seed paired differences with their t-interval, wins out of n and a
Holm-adjusted paired t-test -- within each level of the other factors (e.g.
each training-set size). Exit status 2 with one ``error:`` line for bad input:
no runs, an unknown ``--by`` or ``--reference`` key, runs that differ in a key
that is neither a factor nor the seed.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from hybridconv.run_layout import FINDINGS_FILE, PAIRED_FILE
from hybridconv.studies import findings, readings, records, runner, stats

SEED_KEYS = ("seed",)
# Keys that do not change what a run learns (paths, cadences of logging, evaluation and
# checkpoints, devices, tracking): they never split or block a study's groups; where they
# differ between runs, the report says so in a note.
NEUTRAL_PREFIXES = (
  "tracking.",
  "checkpoint.",
  "eval_every_epochs",
  "eval_batch_size",
  "distributed.",
  "robustness.",
  "cpu_devices",
  "keep_host_buffers",
  "allow_config_change",
  "data.data_dir",
  "log_every_steps",
  "data.prepare",
)
METRIC = "eval/accuracy"


def _neutral(key: str) -> bool:
  return any(key == p or key.startswith(p) for p in NEUTRAL_PREFIXES)


def neutral_differences(runs: Sequence[records.RunRecord]) -> list[str]:
  """Keys that cannot change what a run learns but differ between these runs, sorted."""
  keys = sorted({k for run in runs for k in run.flat})
  return [
    k for k in keys if _neutral(k) and len({repr(run.flat.get(k, "<absent>")) for run in runs}) > 1
  ]


def varying_keys(runs: Sequence[records.RunRecord]) -> list[str]:
  """Config keys whose value differs between runs (neutral keys left out), sorted."""
  keys = sorted({k for run in runs for k in run.flat})
  return [
    k
    for k in keys
    if not _neutral(k) and len({repr(run.flat.get(k, "<absent>")) for run in runs}) > 1
  ]


def choose_factors(
  runs: Sequence[records.RunRecord], by: Sequence[str] | None, plan: Mapping[str, Any] | None
) -> list[str]:
  """The grouping keys, checked: within a group only the seed may vary.

  Raises:
    ValueError: an unknown ``--by`` key, or a varying key that is neither a
      factor nor the seed.
  """
  known = {k for run in runs for k in run.flat}
  for key in by or ():
    if key not in known:
      raise ValueError(
        f"--by {key!r} is not a config key of these runs; keys that vary: "
        f"{varying_keys(runs) or 'none'}"
      )
  varying = varying_keys(runs)
  if by:
    factors = list(by)
  elif plan and plan.get("factors") is not None:
    factors = [k for k in plan["factors"] if k not in SEED_KEYS and k in known]
  else:
    factors = [k for k in varying if k not in SEED_KEYS]
  # A key outside the factors may vary between groups (a budget set per training
  # size), never within one: then two runs of a group would not be replicates.
  groups: dict[tuple, list[records.RunRecord]] = {}
  for run in runs:
    groups.setdefault(tuple(repr(run.flat.get(k)) for k in factors), []).append(run)
  for key in varying:
    if key in factors or key in SEED_KEYS or key == "data.subset_seed":
      continue
    for members in groups.values():
      values = sorted({repr(run.flat.get(key, "<absent>")) for run in members})
      if len(values) > 1:
        raise ValueError(
          f"runs differ in config.{key} ({', '.join(values[:4])}) within one group of the "
          f"factors {factors or '(none)'}, and it is neither a factor nor the seed; add it "
          f"with --by {key} or compare those runs separately"
        )
  return factors


def parse_reference(text: str | None, factors: Sequence[str]) -> tuple[str, Any] | None:
  if not text:
    return None
  key, sep, value = text.partition("=")
  if not sep or key not in factors:
    raise ValueError(
      f"--reference {text!r}: expected key=value with key one of the factors "
      f"{list(factors) or '(none)'}"
    )
  return key, value


def group_key(run: records.RunRecord, factors: Sequence[str]) -> tuple:
  return tuple(run.flat.get(k) for k in factors)


def results_rows(
  runs: Sequence[records.RunRecord], factors: Sequence[str], root: str
) -> list[dict[str, Any]]:
  """One row per run: factors, seed, final and best test metrics, time, robustness summaries."""
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
    for family, value in sorted(((run.robustness or {}).get("summary") or {}).items()):
      row[f"robustness_{family}"] = value
    rows.append(row)
  return rows


def _value_text(value: Any) -> str:
  return str(value)


def summary_rows(
  runs: Sequence[records.RunRecord], factors: Sequence[str], reference: tuple[str, Any] | None
) -> list[dict[str, Any]]:
  """One row per group: n, mean, sd, 95% CI; paired difference against the reference arm."""
  groups: dict[tuple, list[records.RunRecord]] = {}
  for run in runs:
    groups.setdefault(group_key(run, factors), []).append(run)
  rows = []
  for key in sorted(groups, key=lambda k: tuple(_sort_key(v) for v in k)):
    members = groups[key]
    summary = stats.t_interval([r.final() for r in members])
    best = stats.t_interval([r.best()[0] for r in members])
    row = {
      **dict(zip(factors, key, strict=True)),
      "n": summary.n,
      "mean": summary.mean,
      "std": summary.std,
      "ci_low": summary.ci_low,
      "ci_high": summary.ci_high,
      "best_mean": best.mean,
      "seeds": " ".join(
        str(r.flat.get("seed"))
        for r in sorted(members, key=lambda r: _sort_key(r.flat.get("seed")))
      ),
    }
    families = sorted({f for r in members for f in ((r.robustness or {}).get("summary") or {})})
    for family in families:
      values = [((r.robustness or {}).get("summary") or {}).get(family, math.nan) for r in members]
      interval = stats.t_interval(values)
      row["robustness_n"] = max(row.get("robustness_n", 0), interval.n)
      row[f"robustness_{family}_mean"] = interval.mean
      row[f"robustness_{family}_ci_low"] = interval.ci_low
      row[f"robustness_{family}_ci_high"] = interval.ci_high
    if reference is not None:
      row.update(_paired_columns(key, factors, reference, groups))
      row.update(_robustness_diff_columns(key, factors, reference, groups, families))
    rows.append(row)
  if reference is not None:
    others = [k for k in factors if k != reference[0]]
    for members in _levels(rows, others):
      adjusted = stats.holm([row.get("diff_p", math.nan) for row in members])
      for row, p in zip(members, adjusted, strict=True):
        row["diff_p_holm"] = p
      _holm_over_robustness(members)
  return rows


def _levels(rows: list[dict[str, Any]], keys: Sequence[str]) -> list[list[dict[str, Any]]]:
  """``rows`` split by their values of ``keys`` (e.g. one list per training size)."""
  levels: dict[tuple, list[dict[str, Any]]] = {}
  for row in rows:
    levels.setdefault(tuple(repr(row.get(k)) for k in keys), []).append(row)
  return list(levels.values())


def _holm_over_robustness(rows: list[dict[str, Any]]) -> None:
  """Adds ``..._p_holm`` to every robustness difference of ``rows`` (one level): one family."""
  keys = [
    (i, k)
    for i, row in enumerate(rows)
    for k in row
    if k.startswith("diff_robustness_") and k.endswith("_p")
  ]
  adjusted = stats.holm([rows[i][k] for i, k in keys])
  for (i, k), p in zip(keys, adjusted, strict=True):
    rows[i][k + "_holm"] = p


def _partner(
  key: tuple, factors: Sequence[str], reference: tuple[str, Any], groups: Mapping[tuple, Any]
) -> tuple | None | bool:
  """The reference group at ``key``'s levels of the other factors; True if ``key`` is it."""
  ref_key, ref_value = reference
  position = list(factors).index(ref_key)
  if _value_text(key[position]) == ref_value:
    return True
  return next(
    (
      k
      for k in groups
      if _value_text(k[position]) == ref_value
      and all(a == b for i, (a, b) in enumerate(zip(k, key, strict=True)) if i != position)
    ),
    None,
  )


def _paired_columns(
  key: tuple,
  factors: Sequence[str],
  reference: tuple[str, Any],
  groups: Mapping[tuple, list[records.RunRecord]],
) -> dict[str, Any]:
  partner = _partner(key, factors, reference, groups)
  if partner is True:
    return {
      "diff_n": "",
      "diff_mean": "",
      "diff_ci_low": "",
      "diff_ci_high": "",
      "wins": "",
      "diff_p": math.nan,
      "is_reference": True,
    }
  if partner is None:
    return {"diff_n": 0, "diff_p": math.nan, "is_reference": False}
  by_seed = {r.flat.get("seed"): r.final() for r in groups[key]}
  ref_by_seed = {r.flat.get("seed"): r.final() for r in groups[partner]}
  diff = stats.paired_difference(by_seed, ref_by_seed)
  return {
    "diff_n": diff.n,
    "diff_mean": diff.mean,
    "diff_ci_low": diff.ci_low,
    "diff_ci_high": diff.ci_high,
    "wins": f"{diff.wins}/{diff.n}",
    "diff_p": diff.p_value,
    "is_reference": False,
  }


def _robustness_of(run: records.RunRecord, family: str) -> float | None:
  return ((run.robustness or {}).get("summary") or {}).get(family)


def _robustness_diff_columns(
  key: tuple,
  factors: Sequence[str],
  reference: tuple[str, Any],
  groups: Mapping[tuple, list[records.RunRecord]],
  families: Sequence[str],
) -> dict[str, Any]:
  """Per family: the paired difference of robustness (arm minus reference) over shared seeds.

  Robustness differences are read beside the clean one: a first layer that is
  more accurate everywhere is not thereby more robust.
  """
  partner = _partner(key, factors, reference, groups)
  if partner is True or partner is None:
    return {}
  columns: dict[str, Any] = {}
  for family in families:
    mine = {r.flat.get("seed"): _robustness_of(r, family) for r in groups[key]}
    theirs = {r.flat.get("seed"): _robustness_of(r, family) for r in groups[partner]}
    mine = {s: v for s, v in mine.items() if v is not None}
    theirs = {s: v for s, v in theirs.items() if v is not None}
    if not set(mine) & set(theirs):
      continue
    diff = stats.paired_difference(mine, theirs)
    prefix = f"diff_robustness_{family}"
    columns.update(
      {
        f"{prefix}_n": diff.n,
        f"{prefix}_mean": diff.mean,
        f"{prefix}_ci_low": diff.ci_low,
        f"{prefix}_ci_high": diff.ci_high,
        f"{prefix}_wins": f"{diff.wins}/{diff.n}",
        f"{prefix}_p": diff.p_value,
      }
    )
  return columns


def _sort_key(value: Any) -> tuple:
  return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def write_csv(path: str, rows: Sequence[Mapping[str, Any]]) -> None:
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


def load_study(paths: Sequence[str]) -> tuple[list[records.RunRecord], dict | None, str]:
  """The runs under ``paths``, the sweep plan of a single root (if any), and the common root."""
  run_dirs = records.find_run_dirs(paths)
  if not run_dirs:
    raise ValueError(f"--workdir {', '.join(paths)}: no runs found (no config.json at or below)")
  runs = [records.load_run(d) for d in run_dirs]
  root = (
    os.path.commonpath([os.path.abspath(p) for p in paths])
    if len(paths) > 1
    else os.path.abspath(paths[0])
  )
  plan = runner.read_plan(root) if len(paths) == 1 else None
  return runs, plan, root


def compare(
  paths: Sequence[str],
  *,
  out: str | None = None,
  by: Sequence[str] | None = None,
  reference: str | None = None,
  figures: bool = True,
  likeness: bool = True,
  readme: str | None = None,
) -> str:
  """Writes ``STUDY.md``, ``results.csv``, ``summary.csv`` and figures; returns STUDY.md's path.

  With a reference arm also ``paired.csv`` (every reading's paired differences,
  :mod:`hybridconv.studies.readings`) and ``FINDINGS.md`` (:mod:`hybridconv.studies.findings`);
  ``readme``: a document whose findings block is replaced by the new one.

  Raises:
    ValueError: bad input (see the module docstring), before anything is written.
  """
  all_runs, plan, root = load_study(paths)
  # A study compares what the runs reached at the end of their budget: a run still
  # training (or stopped) would mix an earlier step into an arm's mean.
  runs = [run for run in all_runs if run.finished]
  if not runs:
    raise ValueError(
      f"--workdir {', '.join(paths)}: {len(all_runs)} runs, none finished yet "
      "(no summary.json saying so); nothing to compare"
    )
  unfinished = [run for run in all_runs if not run.finished]
  factors = choose_factors(runs, by, plan)
  ref = parse_reference(reference, factors)
  if readme is not None:
    _check_readme(readme, ref)
  out_arg, out = out, os.path.abspath(out or root)
  os.makedirs(out, exist_ok=True)
  results = results_rows(runs, factors, out)
  summary = summary_rows(runs, factors, ref)
  paired = readings.paired_rows(runs, factors, ref) if ref else []
  write_csv(os.path.join(out, "results.csv"), results)
  write_csv(os.path.join(out, "summary.csv"), summary)
  from hybridconv.studies import study_report  # noqa: PLC0415  (matplotlib, JAX for likeness)

  command = " ".join(
    [
      "hybridconv compare",
      *(f"--workdir={p}" for p in paths),
      *(f"--by={k}" for k in by or ()),
      *([f"--reference={reference}"] if reference else []),
      *([f"--out={out_arg}"] if out_arg else []),
      *([] if figures else ["--no-figures"]),
      *([] if likeness else ["--no-likeness"]),
      *([f"--readme={readme}"] if readme else []),
    ]
  )
  if ref:
    write_csv(os.path.join(out, PAIRED_FILE), paired)
    findings_path = findings.write_findings(
      os.path.join(out, FINDINGS_FILE), paired, runs, factors, ref, command=command, plan=plan
    )
    if readme:
      _update_readme(readme, findings_path)
  return study_report.write_study(
    out,
    runs,
    factors,
    ref,
    results,
    summary,
    plan=plan,
    figures=figures,
    likeness=likeness,
    command=command,
    unfinished=unfinished,
    paired=paired,
  )


def _update_readme(readme: str, findings_path: str) -> None:
  """Replaces the findings block of ``readme`` by the one just written (nothing else)."""
  with open(readme, encoding="utf-8") as f:
    document = f.read()
  with open(findings_path, encoding="utf-8") as f:
    generated = f.read()
  with open(readme, "w", encoding="utf-8") as f:
    f.write(findings.replace_block(document, generated))


def _check_readme(readme: str, ref) -> None:
  """Refuses ``--readme`` before anything is written: it needs a reference and a block."""
  if ref is None:
    raise ValueError(f"--readme={readme!r} needs --reference (the findings compare to it)")
  try:
    with open(readme, encoding="utf-8") as f:
      text = f.read()
  except OSError as error:
    raise ValueError(f"--readme={readme!r} cannot be read: {error.strerror}") from error
  if findings.BEGIN not in text or findings.END not in text:
    raise ValueError(
      f"--readme={readme!r} has no findings block: add the lines {findings.BEGIN!r} and "
      f"{findings.END!r} where the findings belong"
    )


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="hybridconv compare", description=__doc__.split("\n")[0])
  parser.add_argument(
    "--workdir",
    action="append",
    required=True,
    help="a sweep root or a run directory (repeat for several)",
  )
  parser.add_argument(
    "--by",
    action="append",
    default=None,
    help="group by this config key (repeat; default: the study's factors)",
  )
  parser.add_argument(
    "--reference",
    default=None,
    help="reference arm for paired differences, e.g. model.first_layer=free",
  )
  parser.add_argument("--out", default=None, help="output folder (default: the sweep root)")
  parser.add_argument("--no-figures", dest="figures", action="store_false")
  parser.add_argument(
    "--no-likeness",
    dest="likeness",
    action="store_false",
    help="skip the Gabor-likeness fits (and their figure)",
  )
  parser.add_argument(
    "--readme",
    default=None,
    help="also replace the findings block of this document (e.g. README.md) by the new one",
  )
  args = parser.parse_args(argv)
  try:
    path = compare(
      args.workdir,
      out=args.out,
      by=args.by,
      reference=args.reference,
      figures=args.figures,
      likeness=args.likeness,
      readme=args.readme,
    )
  except ValueError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(f"wrote {path}")
  return 0


def run() -> None:
  sys.exit(main())
