"""experiments/kernel_study/convergence.py: each arm's validation gain over its last quarter."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from experiments.kernel_study import convergence
from hybridconv.studies import records

RESULTS = convergence.DEFAULT_ROOT
POINT = "train_size=100,seed=0,arm=free"


def test_the_gain_is_the_end_reading_minus_the_three_quarter_one():
  run = records.load_run(os.path.join(RESULTS, POINT))
  steps, values = run.series("val/accuracy")
  total = run.summary["total_steps"]
  # 8 evaluations along 160 steps: the sixth (step 120) is three quarters of the budget.
  by_step = dict(zip(steps.tolist(), values.tolist(), strict=True))
  assert convergence.last_quarter_gain(run) == pytest.approx(by_step[total] - by_step[120])
  groups = convergence.gains_by_group([run])
  assert list(groups) == [(100, "free")]
  assert groups[(100, "free")] == [pytest.approx(100 * (by_step[total] - by_step[120]))]


def test_an_unfinished_run_or_one_without_validation_is_left_out(tmp_path):
  run = records.load_run(os.path.join(RESULTS, POINT))
  unfinished = records.RunRecord(**{**run.__dict__, "summary": None})
  unread = records.RunRecord(**{**run.__dict__, "metrics": {}})
  assert convergence.gains_by_group([unfinished, unread]) == {}


def test_a_workdir_without_runs_is_one_error_line(tmp_path):
  done = subprocess.run(
    [sys.executable, convergence.__file__, f"--workdir={tmp_path}"], capture_output=True, text=True
  )
  errors = [line for line in done.stderr.splitlines() if "error:" in line]
  assert done.returncode == 2 and len(errors) == 1 and "holds no finished run" in errors[0]
