"""The `hybridconv` console script and the local sweep runner, as a user calls them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "hybridconv.cli", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_usage_and_unknown_command():
  assert _cli().returncode == 2
  result = _cli("fly")
  assert result.returncode == 2
  assert "unknown command 'fly'; commands: train, sweep, analyze, evaluate" in result.stderr


@pytest.mark.slow
def test_train_prints_where_the_results_are(tmp_path):
  result = _cli("train", "--config=configs/tiny.py:free", f"--workdir={tmp_path}",
                "--config.num_train_steps=2")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "finished at step 2" in result.stdout
  assert f"results in {tmp_path}: checkpoints/, config.json, metrics.jsonl" in result.stdout
  assert sorted(os.listdir(tmp_path)) == ["checkpoints", "config.json", "metrics.jsonl"]
  analyze = _cli("analyze", f"--workdir={tmp_path}")
  assert analyze.returncode == 0, analyze.stderr[-2000:]
  assert analyze.stdout.strip().endswith("REPORT.md")
  with open(tmp_path / "REPORT.md", encoding="utf-8") as f:
    assert "| `eval/accuracy` |" in f.read()
  assert _cli("analyze", f"--workdir={tmp_path / 'missing'}").returncode == 2


def test_sweep_dry_run_lists_one_command_per_point(tmp_path):
  result = _cli("sweep", "--config=configs/fashion_mnist.py:hybrid", f"--workdir={tmp_path}",
                "--dry_run")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 15
  assert lines[1].endswith(
      f"--workdir={tmp_path}/001_first_layer=gabor,seed=0 --config.model.first_layer=gabor "
      "--config.seed=0")
  assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_sweep_runs_each_point_in_its_own_workdir(tmp_path):
  result = _cli("sweep", "--config=configs/tiny.py", f"--workdir={tmp_path}", timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  with open(tmp_path / "sweep_results.jsonl", encoding="utf-8") as f:
    results = [json.loads(line) for line in f]
  assert [r["overrides"] for r in results] == [{"model.first_layer": "free"},
                                              {"model.first_layer": "gabor"}]
  assert all(r["exit_code"] == 0 and r["step"] == 8 and 0 <= r["eval/accuracy"] <= 1
             for r in results)
  for r in results:
    with open(os.path.join(r["workdir"], "config.json"), encoding="utf-8") as f:
      assert json.load(f)["model"]["first_layer"] == r["overrides"]["model.first_layer"]
