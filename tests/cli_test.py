"""The `hybridconv` console script and the local study runner, as a user calls them."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from hybridconv import run_layout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
    [sys.executable, "-m", "hybridconv.cli", *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def test_usage_and_unknown_command():
  assert _cli().returncode == 2
  result = _cli("fly")
  assert result.returncode == 2
  assert "unknown command 'fly'; commands: train, study, analyze, evaluate" in result.stderr


@pytest.mark.slow
def test_train_prints_where_the_results_are(tmp_path):
  result = _cli(
    "train", "--config=configs/tiny.py:free", f"--workdir={tmp_path}", "--config.train_for=2steps"
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert "finished at step 2" in result.stdout
  listing = (
    "checkpoints/, config.json, initial_values.json, metrics.jsonl, run_info.json, summary.json, "
    "train_subset.json"
  )
  assert f"results in {tmp_path}: {listing}" in result.stdout
  assert sorted(os.listdir(tmp_path)) == [
    "checkpoints",
    "config.json",
    "initial_values.json",
    "metrics.jsonl",
    "run_info.json",
    "summary.json",
    "train_subset.json",
  ]
  analyze = _cli("analyze", f"--workdir={tmp_path}")
  assert analyze.returncode == 0, analyze.stderr[-2000:]
  assert analyze.stdout.strip().endswith("REPORT.md")
  with open(tmp_path / "REPORT.md", encoding="utf-8") as f:
    assert "| `eval/accuracy` |" in f.read()
  assert _cli("analyze", f"--workdir={tmp_path / 'missing'}").returncode == 2


@pytest.mark.slow
def test_study_dry_run_lists_one_command_per_point(tmp_path):
  result = _cli(
    "study", "--config=configs/fashion_mnist.py:hybrid", f"--workdir={tmp_path}", "--dry_run"
  )
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 15
  assert f"--workdir={tmp_path}/first_layer=gabor,seed=0 " in lines[1]
  assert lines[1].endswith("--config.model.first_layer=gabor --config.seed=0")
  assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_study_runs_each_point_in_its_own_workdir(tmp_path):
  result = _cli("study", "--config=configs/tiny.py", f"--workdir={tmp_path}", timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  with open(tmp_path / run_layout.RESULTS_FILE, encoding="utf-8") as f:
    results = list(csv.DictReader(f))
  assert [r["model.first_layer"] for r in results] == ["free", "gabor"]
  assert all(
    r["status"] == "finished"
    and float(r["steps"]) == 8
    and 0 <= float(r["final_eval_accuracy"]) <= 1
    for r in results
  )
  for r in results:
    with open(os.path.join(tmp_path, r["workdir"], "config.json"), encoding="utf-8") as f:
      assert json.load(f)["model"]["first_layer"] == r["model.first_layer"]
