"""``experiments/kernel_study/study_time.py``: the study's wall time from the runner's records."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hybridconv import run_layout

SCRIPT = os.path.join(
  os.path.dirname(os.path.dirname(__file__)), "experiments", "kernel_study", "study_time.py"
)


def _root(tmp_path, recorded: dict[str, list[float]]):
  """A study root of two sizes x two seeds; ``recorded`` maps a point to its process walls."""
  points = [{"data.train_size": size, "seed": seed} for size in (100, 0) for seed in (0, 1)]
  (tmp_path / run_layout.PLAN_FILE).write_text(json.dumps({"points": points}))
  for point in points:
    name = f"train_size={point['data.train_size']},seed={point['seed']},first_layer=free"
    os.makedirs(tmp_path / name)
    if name in recorded:
      walls = recorded[name]
      times = {"train": [{"wall_seconds": walls[0], "exit": 0}]}
      if len(walls) > 1:
        times["robustness"] = [{"wall_seconds": walls[1], "exit": 0}]
      (tmp_path / name / run_layout.TIMES_FILE).write_text(json.dumps(times))
  return tmp_path


def _run(root, *extra):
  result = subprocess.run(
    [sys.executable, SCRIPT, f"--workdir={root}", *extra],
    capture_output=True,
    text=True,
    check=True,
  )
  return result.stdout.strip().splitlines()


def test_projection_sums_each_points_processes_and_scales_the_median_by_the_planned_points(
  tmp_path,
):
  root = _root(
    tmp_path,
    {
      "train_size=0,seed=0,first_layer=free": [100.0, 50.0],  # 150 s with its robustness
      "train_size=0,seed=1,first_layer=free": [170.0],
    },
  )
  lines = _run(root, "--extra", "100=30")
  # 60,000 images: median of 150 and 170 = 160 s x 2 points; 100 images: 30 s x 2 points.
  assert lines[-1] == f"projected whole study: {(320 + 60) / 60:.0f} min (0.11 h)"
  # Paid so far: the two recorded points' processes, 150 s + 170 s.
  assert lines[-2] == "recorded: 2 of 4 points, 5 min (0.09 h) of wall time at 1 point(s) at a time"


def test_a_size_without_records_gives_no_total(tmp_path):
  root = _root(tmp_path, {"train_size=0,seed=0,first_layer=free": [100.0]})
  lines = _run(root)
  assert lines[-1].startswith("no projection: sizes 100 have no recorded point")
  assert not any(line.startswith("projected whole study") for line in lines)


def test_bad_input_is_one_error_line_and_exit_2(tmp_path):
  (tmp_path / "study").mkdir()
  root = _root(tmp_path / "study", {})
  for args, message in (
    ([f"--workdir={root}", "--extra", "100:61"], "'100:61' is not SIZE=SECONDS"),
    ([f"--workdir={tmp_path}"], f"holds no {run_layout.PLAN_FILE}"),
  ):
    result = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode == 2 and len(errors) == 1 and message in errors[0]


def test_points_run_two_at_a_time_halve_the_projection(tmp_path):
  root = _root(tmp_path, {"train_size=100,seed=0,first_layer=free": [40.0]})
  done = subprocess.run(
    [sys.executable, SCRIPT, "--workdir", str(root), "--extra", "0=60", "--jobs", "2"],
    capture_output=True,
    text=True,
    check=True,
  )
  row = next(line for line in done.stdout.splitlines() if line.strip().startswith("100 |"))
  assert row.split("|")[-1].strip() == f"{2 * 40 / 60 / 2:.1f}"
