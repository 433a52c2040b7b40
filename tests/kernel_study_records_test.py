"""The committed evidence of the kernel-choice study: a fresh clone can report and resume from it.

These tests read the light records under ``experiments/kernel_study/results/fashion_mnist``
(what git holds: configs, metrics, summaries, snapshots), copied into a temporary root as a
fresh clone would have them: no checkpoints, no W&B folders, no images.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hybridconv import configlib, run_layout
from hybridconv.reports import compare_report, findings
from hybridconv.studies import likeness, plan, records
from hybridconv.training import workdir as workdir_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "experiments", "kernel_study", "results", "fashion_mnist")
ARMS = ("free", "fixed_gabor")
SEEDS = (0, 1)


def _point(arm: str, seed: int) -> str:
  return f"train_size=100,seed={seed},arm={arm}"


def _copy_light(names, root) -> None:
  """Copies the committed light records of ``names`` (and the study plan) into ``root``."""
  os.makedirs(root, exist_ok=True)
  shutil.copy(os.path.join(RESULTS, run_layout.PLAN_FILE), root)
  shutil.copy(os.path.join(RESULTS, likeness.CONTROL_FILE), root)
  for name in names:
    for file in run_layout.LIGHT_FILES:
      source = os.path.join(RESULTS, name, file)
      if os.path.isfile(source):
        os.makedirs(os.path.dirname(os.path.join(root, name, file)), exist_ok=True)
        shutil.copy(source, os.path.join(root, name, file))


def _final_accuracy(name: str) -> float:
  with open(os.path.join(RESULTS, name, "summary.json"), encoding="utf-8") as f:
    return json.load(f)["eval/accuracy"]


def _no_refit(*args, **kwargs):
  raise AssertionError("Gabor-likeness refitted: a committed cache was not used")


@pytest.fixture(scope="module")
def names():
  wanted = [_point(arm, seed) for arm in ARMS for seed in SEEDS]
  missing = [n for n in wanted if not os.path.isfile(os.path.join(RESULTS, n, "summary.json"))]
  assert not missing, f"committed study records missing: {missing}"
  return wanted


@pytest.mark.slow
def test_compare_regenerates_the_report_from_committed_records(names, tmp_path, monkeypatch):
  root = str(tmp_path / "fashion_mnist")
  _copy_light(names, root)
  argv = ["--workdir", root, "--reference", "arm=free"]
  # Gabor-likeness comes from the committed caches: a fitter that ran would fail the test.
  monkeypatch.setattr(likeness, "score_kernels", _no_refit)
  assert compare_report.main(argv) == 0
  with open(os.path.join(root, "summary.csv"), encoding="utf-8") as f:
    summary = {row["arm"]: row for row in csv.DictReader(f)}
  for arm in ARMS:
    expected = np.mean([_final_accuracy(_point(arm, s)) for s in SEEDS])
    assert float(summary[arm]["mean"]) == pytest.approx(expected, abs=1e-6)
  diffs = [
    _final_accuracy(_point("fixed_gabor", s)) - _final_accuracy(_point("free", s)) for s in SEEDS
  ]
  assert float(summary["fixed_gabor"]["diff_mean"]) == pytest.approx(np.mean(diffs), abs=1e-6)
  study = open(os.path.join(root, "STUDY.md"), encoding="utf-8").read()
  assert "## Final test accuracy" in study
  with open(os.path.join(RESULTS, likeness.CONTROL_FILE), encoding="utf-8") as f:
    control = json.load(f)["scores"]["frac_above_null_p95"]
  assert f"Positive control (fixed Gabor bank, 7x7): {control:.2f}" in study
  assert os.path.getsize(os.path.join(root, "figures", "first_layer_filters.png")) > 1000


@pytest.mark.slow
def test_the_runner_counts_a_committed_finished_run_as_done(names, tmp_path):
  root = str(tmp_path / "fashion_mnist")
  _copy_light(names[:1], root)
  done = subprocess.run(
    [
      sys.executable,
      "-m",
      "hybridconv.studies.command",
      "--config=experiments/kernel_study/study.py",
      f"--workdir={root}",
      "data.train_size=100",
      "seed=0",
      "arm=free",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert "[study] start" not in done.stdout  # nothing trained: the committed run is finished
  with open(os.path.join(root, run_layout.RESULTS_FILE), encoding="utf-8") as f:
    (row,) = [r for r in csv.DictReader(f) if r["point"] == names[0]]
  assert row["status"] == "finished"
  assert float(row["final_eval_accuracy"]) == pytest.approx(_final_accuracy(names[0]), abs=1e-6)


def _committed_runs() -> list[str]:
  return [
    name
    for name in sorted(os.listdir(RESULTS))
    if os.path.isfile(os.path.join(RESULTS, name, "summary.json"))
  ]


@pytest.mark.slow
def test_the_readme_quotes_exactly_the_findings_the_committed_records_generate(tmp_path):
  root = str(tmp_path / "fashion_mnist")
  _copy_light(_committed_runs(), root)
  args = ["--workdir", root, "--reference", "arm=free", "--no-figures", "--no-likeness"]
  assert compare_report.main(args) == 0
  with open(os.path.join(root, "FINDINGS.md"), encoding="utf-8") as f:
    generated = findings.extract(f.read())
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    assert findings.extract(f.read()) == generated
  with open(os.path.join(RESULTS, "FINDINGS.md"), encoding="utf-8") as f:
    assert findings.extract(f.read()) == generated


@pytest.mark.slow
def test_the_committed_arms_are_paired_on_every_layer_but_the_first(tmp_path):
  runs = [records.load_run(os.path.join(RESULTS, name)) for name in _committed_runs()]
  paired, groups, differing = findings.pairing_check(runs, ["data.train_size", "arm"], "arm")
  assert groups and paired == groups and differing <= {"conv1"}


def test_the_committed_runs_were_trained_with_the_config_the_study_file_builds_now():
  # Records keep the keys of the code that trained them (older ones spell durations as
  # numbers, e.g. num_epochs); upgraded, every key that changes what a run learns must
  # equal what experiments/kernel_study/study.py builds for the same point today, so a
  # resumed study adds points of the same experiment.
  spec = "experiments/kernel_study/study.py"
  study = plan.load_study(spec, {}, {})
  by_name = dict(zip(study.names, study.points, strict=True))
  module, _ = configlib.load_config_module(spec)
  checked = 0
  for name in _committed_runs():
    config = module.get_config()
    configlib.apply_overrides(config, by_name[name])
    built = workdir_lib.flatten_config(configlib.with_defaults(config.to_dict()))
    saved = records.load_run(os.path.join(RESULTS, name)).flat
    differ = {
      k
      for k in set(built) | set(saved)
      if not workdir_lib.is_neutral(k) and built.get(k) != saved.get(k)
    }
    assert not differ, (name, {k: (saved.get(k), built.get(k)) for k in differ})
    checked += 1
  assert checked >= 200


def test_every_committed_finished_point_holds_every_reading_the_report_uses():
  # A point that counts as finished but lost a reading (the test accuracy at its last step,
  # a validation evaluation, the summary's training means) would silently leave its seed out
  # of the paired comparisons: the report reads the test accuracy from metrics.jsonl.
  incomplete = {}
  for name in _committed_runs():
    run_dir = os.path.join(RESULTS, name)
    with open(os.path.join(run_dir, "summary.json"), encoding="utf-8") as f:
      summary = json.load(f)
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
      events = [json.loads(line) for line in f]
    last = summary["total_steps"]
    validation = [e["step"] for e in events if "val/accuracy" in e]
    test = [e["step"] for e in events if "eval/accuracy" in e]
    missing = [
      what
      for what, present in [
        ("8 validation evaluations", len(set(validation)) >= 8),
        ("validation at the last step", last in validation),
        ("test accuracy at the last step, once", test == [last]),
        ("summary readings", {"val/accuracy", "train/loss", "eval/accuracy"} <= set(summary)),
      ]
      if not present
    ]
    if missing:
      incomplete[name] = missing
  assert not incomplete
