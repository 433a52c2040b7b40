"""Reruns committed points of the kernel study with the current code; says how closely they agree.

The study's points ran over many commits, some from a working tree with uncommitted changes
(each run's ``run_info.json`` records the commit and whether it was dirty, and ``STUDY.md``
flags both). Whether that matters is an empirical question: this reruns committed points, by
the documented study command, in a scratch directory, and compares each rerun with its record:

* the per-layer fingerprints of the initial values (``initial_values.json``);
* every validation accuracy along training, and the final test accuracy;
* the last logged training loss;
* the robustness summary, where the point has one.

``--per_commit`` picks, for every code state (commit, dirty or not) that finished a point no
larger than ``--max_size`` images, that state's first such point by name; ``--points`` names
points instead. Points run one at a time with the study's settings (``--jobs=2
--config.cpu_devices=1``, as ``run.sh``), so each rerun pins to one core like the study's::

  .venv/bin/python experiments/kernel_study/reproduce.py --per_commit --max_size 1000
  .venv/bin/python experiments/kernel_study/reproduce.py --points "train_size=100,seed=0,arm=free"

It prints one row per point and the largest difference over all points, and exits 1 when a
point differs (a rerun that fails to train exits with its error). ``--scratch`` keeps the
reruns (a temporary directory otherwise).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from hybridconv import run_layout
from hybridconv.studies import records
from hybridconv.training import provenance
from hybridconv.training import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_STUDY = os.path.join(ROOT, "experiments", "kernel_study", "results", "fashion_mnist")
STUDY_CONFIG = "experiments/kernel_study/study.py"
# The settings every committed point ran with (run.sh).
STUDY_FLAGS = ("--jobs=2", "--config.cpu_devices=1")


def code_state(run_dir: str) -> str:
  """The code state (commit, dirty or not) of the start that finished the point."""
  return provenance.code_state((provenance.read_run_info(run_dir) or [{}])[-1])


def point_values(name: str) -> dict[str, str]:
  """``train_size=100,seed=0,arm=free`` -> ``{'train_size': '100', 'seed': '0', 'arm': 'free'}``."""
  values = {}
  for cell in name.split(","):
    key, sep, value = cell.partition("=")
    if not sep or not key:
      raise ValueError(f"{name!r} is not a point name such as train_size=100,seed=0,arm=free")
    values[key] = value
  return values


def selectors(name: str, keys: Sequence[str]) -> list[str]:
  """The study command's ``key=value`` selectors for a point name, with the study's full keys
  (``train_size`` -> ``data.train_size``)."""
  found = []
  for short, value in point_values(name).items():
    matches = [k for k in keys if k == short or k.endswith("." + short)]
    if len(matches) != 1:
      raise ValueError(f"{short!r} of {name!r} names no single key of the study: {sorted(keys)}")
    found.append(f"{matches[0]}={value}")
  return found


def finished_points(study_dir: str) -> list[str]:
  """Names of the study's finished points, sorted."""
  return sorted(
    name
    for name in os.listdir(study_dir)
    if os.path.isfile(os.path.join(study_dir, name, run_layout.SUMMARY_FILE))
  )


def one_per_code_state(study_dir: str, max_size: int) -> list[str]:
  """The first finished point (by name) of every code state, among points of at most
  ``max_size`` training images."""
  chosen: dict[str, str] = {}
  for name in finished_points(study_dir):
    size = int(point_values(name).get("train_size", "0"))
    if 0 < size <= max_size:
      chosen.setdefault(code_state(os.path.join(study_dir, name)), name)
  return sorted(chosen.values())


def readings(run_dir: str) -> dict[str, Any]:
  """What a rerun must reproduce, from one run's records."""
  run = records.load_run(run_dir)
  steps, values = run.series("val/accuracy")
  robustness = (run.robustness or {}).get("summary") or {}
  return {
    "initial values": provenance.read_initial_values(run_dir),
    "validation": dict(zip(steps.tolist(), values.tolist(), strict=True)),
    "test": run.final("eval/accuracy"),
    "train loss": run.final("train/loss"),
    "robustness": {k: float(v) for k, v in robustness.items()},
  }


def largest_difference(recorded: Mapping[str, float], rerun: Mapping[str, float]) -> float:
  """The largest absolute difference over shared keys (inf when the keys differ)."""
  if recorded.keys() != rerun.keys():
    return math.inf
  return max((abs(recorded[k] - rerun[k]) for k in recorded), default=0.0)


def compare(recorded: Mapping[str, Any], rerun: Mapping[str, Any]) -> dict[str, Any]:
  """Per reading: whether the fingerprints match, and the largest absolute difference of the
  numbers (0.0 means bit for bit, as the records hold them)."""
  return {
    "same initial values": recorded["initial values"] == rerun["initial values"],
    "validation": largest_difference(recorded["validation"], rerun["validation"]),
    "test": abs(recorded["test"] - rerun["test"]),
    "train loss": abs(recorded["train loss"] - rerun["train loss"]),
    "robustness": largest_difference(recorded["robustness"], rerun["robustness"]),
  }


def identical(result: Mapping[str, Any]) -> bool:
  return result["same initial values"] and all(
    result[k] == 0 for k in ("validation", "test", "train loss", "robustness")
  )


def rerun(name: str, keys: Sequence[str], scratch: str, python: str) -> str:
  """Trains point ``name`` by the study command into ``scratch``; returns its run directory."""
  command = [
    python,
    "-m",
    "hybridconv.studies.command",
    f"--config={STUDY_CONFIG}",
    f"--workdir={scratch}",
    *STUDY_FLAGS,
    *selectors(name, keys),
  ]
  done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
  if done.returncode:
    sys.exit(f"error: rerunning {name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
  return os.path.join(scratch, name)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--study", default=DEFAULT_STUDY, help="the committed study's directory")
  which = parser.add_mutually_exclusive_group(required=True)
  which.add_argument("--points", nargs="+", help="point names, e.g. train_size=100,seed=0,arm=free")
  which.add_argument(
    "--per_commit", action="store_true", help="one point per code state that finished points"
  )
  parser.add_argument("--max_size", type=int, default=1000, help="with --per_commit: largest size")
  parser.add_argument("--scratch", help="where the reruns go (default: a temporary directory)")
  args = parser.parse_args(argv)
  plan = workdir_lib.read_json(os.path.join(args.study, run_layout.PLAN_FILE))
  if plan is None:
    parser.error(f"--study={args.study} holds no {run_layout.PLAN_FILE} (not a study directory)")
  keys = sorted({k for point in plan["points"] for k in point})
  finished = set(finished_points(args.study))
  names = args.points or one_per_code_state(args.study, args.max_size)
  for name in names:
    if name not in finished:
      parser.error(f"--points: {name!r} is not a finished point of {args.study}")
    try:
      selectors(name, keys)
    except ValueError as e:
      parser.error(f"--points: {e}")
  if not names:
    parser.error(f"no finished point of at most --max_size={args.max_size} images")

  scratch = args.scratch or tempfile.mkdtemp(prefix="reproduce-")
  print(f"rerunning {len(names)} point(s) into {scratch}", flush=True)
  header = ("point", "recorded by", "init", "validation", "test", "train loss", "robustness")
  print(" | ".join(header))
  differing = []
  for name in names:
    result = compare(
      readings(os.path.join(args.study, name)),
      readings(rerun(name, keys, scratch, sys.executable)),
    )
    if not identical(result):
      differing.append(name)
    print(
      " | ".join(
        [
          name,
          code_state(os.path.join(args.study, name)),
          "same" if result["same initial values"] else "DIFFERENT",
          *(f"{result[k]:.2g}" for k in ("validation", "test", "train loss", "robustness")),
        ]
      ),
      flush=True,
    )
  print(
    f"{len(names) - len(differing)} of {len(names)} point(s) reproduced bit for bit"
    + (f"; differing: {', '.join(differing)}" if differing else "")
  )
  return 1 if differing else 0


if __name__ == "__main__":
  sys.exit(main())
