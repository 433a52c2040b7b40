r"""``hybridconv compare``'s study table -- groups, paired differences, Holm -- and its flags.

::

  hybridconv compare --workdir runs/study --reference model.first_layer=free
  hybridconv compare --workdir runs/a --workdir runs/b --by model.first_layer --out report/

Groups are the study's factors (from the study root's ``study.json``, else
every config key that differs between runs) except the seed, or the keys
given with ``--by``. Per group: n, mean, standard deviation and a 95%
Student-t interval of the final test accuracy; against the ``--reference``
arm, per-seed paired differences with their t-interval, wins out of n and a
Holm-adjusted paired t-test -- within each level of the other factors (e.g.
each training-set size). Exit status 2 with one ``error:`` line for bad input:
no runs, an unknown ``--by`` or ``--reference`` key, runs that differ in a key
that is neither a factor nor the seed.

The table is data (a :class:`Study` of :class:`Group` s); the files -- ``STUDY.md``,
``FINDINGS.md``, the CSVs and figures -- are written from it by
:mod:`hybridconv.reports.compare_report`, the command's entry, which hands its writer to
:func:`main` (reports sit on the floor above studies).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hybridconv.studies import plan as plan_lib
from hybridconv.studies import readings, records, stats
from hybridconv.training import workdir as workdir_lib

SEED_KEYS = ("seed",)


def neutral_differences(runs: Sequence[records.RunRecord]) -> list[str]:
  """Keys that cannot change what a run learns but differ between these runs, sorted."""
  keys = sorted({k for run in runs for k in run.flat})
  return [
    k
    for k in keys
    if workdir_lib.is_neutral(k) and len({repr(run.flat.get(k, "<absent>")) for run in runs}) > 1
  ]


def varying_keys(runs: Sequence[records.RunRecord]) -> list[str]:
  """Config keys whose value differs between runs (neutral keys left out), sorted."""
  keys = sorted({k for run in runs for k in run.flat})
  return [
    k
    for k in keys
    if not workdir_lib.is_neutral(k)
    and len({repr(run.flat.get(k, "<absent>")) for run in runs}) > 1
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


@dataclasses.dataclass(frozen=True)
class Group:
  """One group of the study table: a value per factor, every seed, and its statistics.

  Against a reference arm a group is the reference itself (``is_reference``), has
  no reference group at its levels of the other factors (``diff`` None), or has
  its paired differences: ``diff`` for the final test accuracy and
  ``robustness_diff`` per robustness family, each with its Holm-adjusted p.
  """

  levels: tuple  # the factors' values, in the order of the factors
  runs: tuple[records.RunRecord, ...]
  final: stats.Summary  # final test accuracy over the seeds
  best: stats.Summary  # the best evaluation during training (optimistic)
  seeds: tuple  # the group's seeds, sorted
  robustness: Mapping[str, stats.Summary]  # family -> mean accuracy over the family's levels
  is_reference: bool = False
  diff: stats.PairedDifference | None = None
  diff_p_holm: float = math.nan
  robustness_diff: Mapping[str, stats.PairedDifference] = dataclasses.field(default_factory=dict)
  robustness_p_holm: Mapping[str, float] = dataclasses.field(default_factory=dict)

  @property
  def robustness_n(self) -> int:
    """Seeds with robustness results (the most over the families)."""
    return max((s.n for s in self.robustness.values()), default=0)


@dataclasses.dataclass(frozen=True)
class Study:
  """A study's finished runs and their statistics: everything its reports are written from."""

  root: str  # the common folder of the compared paths
  plan: Mapping[str, Any] | None  # the study plan of a single study root
  runs: list[records.RunRecord]  # the finished runs, the only ones compared
  unfinished: list[records.RunRecord]  # listed by the report, counted nowhere
  factors: list[str]
  reference: tuple[str, Any] | None  # (factor, value as text) of the reference arm
  groups: list[Group]  # sorted by the factors' values
  paired: list[dict[str, Any]]  # every reading's paired differences (readings.paired_rows)


def robustness_summary(run: records.RunRecord) -> Mapping[str, float]:
  """A run's mean accuracy per robustness family (empty without robustness results)."""
  return (run.robustness or {}).get("summary") or {}


def group_table(
  runs: Sequence[records.RunRecord], factors: Sequence[str], reference: tuple[str, Any] | None
) -> list[Group]:
  """One :class:`Group` per combination of the factors' values, sorted by them.

  With a reference arm, Holm's adjustment runs over the arms compared at each
  level of the other factors (each training size): once for the final test
  accuracy, once over every robustness comparison of that level.
  """
  members: dict[tuple, list[records.RunRecord]] = {}
  for run in runs:
    members.setdefault(group_key(run, factors), []).append(run)
  keys = sorted(members, key=lambda k: tuple(_sort_key(v) for v in k))
  table = [_group(key, factors, reference, members) for key in keys]
  if reference is None:
    return table
  others = [list(factors).index(k) for k in factors if k != reference[0]]
  for indices in _levels(table, others):
    table = _with_holm(table, indices)
  return table


def _group(
  key: tuple,
  factors: Sequence[str],
  reference: tuple[str, Any] | None,
  members: Mapping[tuple, list[records.RunRecord]],
) -> Group:
  runs = members[key]
  families = sorted({f for run in runs for f in robustness_summary(run)})
  group = Group(
    levels=key,
    runs=tuple(runs),
    final=stats.t_interval([run.final() for run in runs]),
    best=stats.t_interval([run.best()[0] for run in runs]),
    seeds=tuple(sorted((run.flat.get("seed") for run in runs), key=_sort_key)),
    robustness={
      f: stats.t_interval([robustness_summary(run).get(f, math.nan) for run in runs])
      for f in families
    },
  )
  if reference is None:
    return group
  partner = _partner(key, factors, reference, members)
  if partner is True:
    return dataclasses.replace(group, is_reference=True)
  if partner is None:
    return group
  return dataclasses.replace(
    group,
    diff=stats.paired_difference(
      _by_seed(runs, records.RunRecord.final), _by_seed(members[partner], records.RunRecord.final)
    ),
    robustness_diff=_robustness_differences(runs, members[partner], families),
  )


def _by_seed(runs: Sequence[records.RunRecord], value) -> dict[Any, float]:
  """``{seed: value(run)}``, runs without a value left out."""
  values = {run.flat.get("seed"): value(run) for run in runs}
  return {seed: v for seed, v in values.items() if v is not None}


def _levels(table: Sequence[Group], positions: Sequence[int]) -> list[list[int]]:
  """Indices of ``table`` split by their values at ``positions`` (e.g. one list per size)."""
  levels: dict[tuple, list[int]] = {}
  for i, group in enumerate(table):
    levels.setdefault(tuple(repr(group.levels[p]) for p in positions), []).append(i)
  return list(levels.values())


def _with_holm(table: list[Group], indices: Sequence[int]) -> list[Group]:
  """``table`` with Holm-adjusted p-values for the groups at ``indices`` (one level)."""
  adjusted = stats.holm(
    [table[i].diff.p_value if table[i].diff is not None else math.nan for i in indices]
  )
  # Robustness: Holm within each corruption family (the arms compared under it at this
  # level), the rule every reading of hybridconv.studies.readings follows.
  by_group: dict[int, dict[str, float]] = {}
  for family in sorted({f for i in indices for f in table[i].robustness_diff}):
    tested = [i for i in indices if family in table[i].robustness_diff]
    robust = stats.holm([table[i].robustness_diff[family].p_value for i in tested])
    for i, p in zip(tested, robust, strict=True):
      by_group.setdefault(i, {})[family] = p
  table = list(table)
  for i, p in zip(indices, adjusted, strict=True):
    table[i] = dataclasses.replace(table[i], diff_p_holm=p, robustness_p_holm=by_group.get(i, {}))
  return table


def _value_text(value: Any) -> str:
  return str(value)


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


def _robustness_differences(
  runs: Sequence[records.RunRecord],
  reference_runs: Sequence[records.RunRecord],
  families: Sequence[str],
) -> dict[str, stats.PairedDifference]:
  """Per family: the paired difference of robustness (arm minus reference) over shared seeds.

  Robustness differences are read beside the clean one: a first layer that is
  more accurate everywhere is not thereby more robust.
  """
  differences = {}
  for family in families:
    mine = _by_seed(runs, lambda run, f=family: robustness_summary(run).get(f))
    theirs = _by_seed(reference_runs, lambda run, f=family: robustness_summary(run).get(f))
    if set(mine) & set(theirs):
      differences[family] = stats.paired_difference(mine, theirs)
  return differences


def _sort_key(value: Any) -> tuple:
  return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def load_study(paths: Sequence[str]) -> tuple[list[records.RunRecord], dict | None, str]:
  """The runs under ``paths``, the study plan of a single root (if any), and the common root."""
  run_dirs = records.find_run_dirs(paths)
  if not run_dirs:
    raise ValueError(f"--workdir {', '.join(paths)}: no runs found (no config.json at or below)")
  runs = [records.load_run(d) for d in run_dirs]
  root = (
    os.path.commonpath([os.path.abspath(p) for p in paths])
    if len(paths) > 1
    else os.path.abspath(paths[0])
  )
  plan = plan_lib.read_plan(root) if len(paths) == 1 else None
  return runs, plan, root


def study_table(
  paths: Sequence[str], *, by: Sequence[str] | None = None, reference: str | None = None
) -> Study:
  """The study under ``paths``: its finished runs grouped, with paired differences and Holm.

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
  factors = choose_factors(runs, by, plan)
  ref = parse_reference(reference, factors)
  return Study(
    root=root,
    plan=plan,
    runs=runs,
    unfinished=[run for run in all_runs if not run.finished],
    factors=factors,
    reference=ref,
    groups=group_table(runs, factors, ref),
    paired=readings.paired_rows(runs, factors, ref) if ref else [],
  )


@dataclasses.dataclass(frozen=True)
class Outputs:
  """What the command line asks the report writer for."""

  out: str | None  # the output folder (None: the study's root)
  figures: bool
  likeness: bool  # fit Gabor-likeness (and draw its figure)
  readme: str | None  # a document whose findings block is replaced by the new one
  command: str  # the command line that regenerates the report


Writer = Callable[[Study, Outputs], str]


def parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="hybridconv compare", description=__doc__.split("\n")[0])
  parser.add_argument(
    "--workdir",
    action="append",
    required=True,
    help="a study root or a run directory (repeat for several)",
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
  parser.add_argument("--out", default=None, help="output folder (default: the study root)")
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
  return parser


def command_line(args: argparse.Namespace) -> str:
  """The ``hybridconv compare`` line that regenerates the report, as the report quotes it."""
  return " ".join(
    [
      "hybridconv compare",
      *(f"--workdir={p}" for p in args.workdir),
      *(f"--by={k}" for k in args.by or ()),
      *([f"--reference={args.reference}"] if args.reference else []),
      *([f"--out={args.out}"] if args.out else []),
      *([] if args.figures else ["--no-figures"]),
      *([] if args.likeness else ["--no-likeness"]),
      *([f"--readme={args.readme}"] if args.readme else []),
    ]
  )


def main(argv: Sequence[str] | None, write: Writer) -> int:
  """``hybridconv compare``: the study table of ``argv``'s runs, handed to ``write``.

  Args:
    argv: the command's arguments.
    write: writes the report's files and returns the path to print
      (:func:`hybridconv.reports.compare_report.write`).

  Returns:
    The exit status: 0, or 2 after one ``error:`` line for bad input.
  """
  args = parser().parse_args(argv)
  try:
    study = study_table(args.workdir, by=args.by, reference=args.reference)
    outputs = Outputs(args.out, args.figures, args.likeness, args.readme, command_line(args))
    path = write(study, outputs)
  except ValueError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(f"wrote {path}")
  return 0
