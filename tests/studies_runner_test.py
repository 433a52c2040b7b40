"""The study runner as a user drives it: grids, overrides, dry runs, re-runs, a killed point."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
import yaml

from hybridconv import run_layout
from hybridconv.studies import command as study_cli
from hybridconv.studies import runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = "configs/tiny.py"
FAST = ["--config.train_for=6steps", "--config.cpu_devices=1"]


def _study(*args, env=None, check=True):
  done = subprocess.run(
    [sys.executable, "-m", "hybridconv.studies.command", f"--config={SPEC}", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    env={**os.environ, **(env or {})},
    timeout=900,
  )
  if check:
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
  return done


def _rows(root):
  with open(os.path.join(root, run_layout.RESULTS_FILE), encoding="utf-8") as f:
    return list(csv.DictReader(f))


@pytest.mark.slow
def test_dry_run_prints_pasteable_commands_with_grid_and_overrides(tmp_path):
  done = _study(
    f"--workdir={tmp_path}", "--grid", "seed=0,1", "--config.data.train_size=64", "--dry_run"
  )
  lines = done.stdout.strip().splitlines()
  assert len(lines) == 4  # tiny's study() has 2 arms, crossed with 2 seeds
  argv = shlex.split(lines[-1])
  assert argv[1:3] == ["-m", "hybridconv.main"]
  assert "--config.data.train_size=64" in argv and "--config.seed=1" in argv
  assert f"--workdir={tmp_path}/first_layer=gabor,seed=1" in argv
  assert "--config.tracking.wandb.group=tiny" in argv


@pytest.mark.slow
def test_bad_input_is_one_error_line(tmp_path):
  for args, message in (
    (["--grid", "seed"], "expected key=value1,value2"),
    (["--config.bogus.key=1"], "bogus"),
    (["--grid", "model.nope=1,2"], "nope"),
    (["model.first_layer=nothing"], "no point of the study has"),
    (["--jobs=0"], "--jobs=0 must be >= 1"),
  ):
    done = _study(f"--workdir={tmp_path}", *args, check=False)
    assert done.returncode == 2, (args, done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], (args, done.stderr)


@pytest.mark.slow
def test_help_lists_the_runners_own_flags():
  done = subprocess.run(
    [sys.executable, "-m", "hybridconv.studies.command", "--help"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  for flag in ("--grid", "--jobs", "--dry_run", "--wandb_yaml", "--device_var"):
    assert flag in done.stdout


@pytest.mark.slow
def test_wandb_yaml_parameters_are_the_factors(tmp_path):
  path = tmp_path / "sweep.yaml"
  _study(
    f"--workdir={tmp_path}",
    "--grid",
    "seed=0,1",
    "--config.train_for=6steps",
    f"--wandb_yaml={path}",
  )
  sweep = yaml.safe_load(path.read_text())
  assert sweep["parameters"] == {
    "model.first_layer": {"values": ["free", "gabor"]},
    "seed": {"values": [0, 1]},
  }
  assert sweep["command"][-1] == "${args_no_hyphens}"
  assert "--config.train_for=6steps" in sweep["command"]
  points = [{"model.first_layer": a, "seed": s} for a in ("free", "gabor") for s in (0, 1)]
  # what an agent's `${args_no_hyphens}` selects: one point (values arrive as text)
  assert study_cli.select(points, {"model.first_layer": "gabor", "seed": "1"}) == [3]


@pytest.mark.slow
def test_rerun_adds_no_rows_and_a_killed_point_resumes(tmp_path):
  root = str(tmp_path / "study")
  # The gabor point is killed at step 5, after its step-4 checkpoint (tiny: every half epoch).
  _study(f"--workdir={root}", *FAST, "model.first_layer=free")
  killed = _study(
    f"--workdir={root}",
    *FAST,
    "model.first_layer=gabor",
    env={"HYBRIDCONV_FAULT": "kill@step:5"},
    check=False,
  )
  assert killed.returncode == 1
  rows = {row["point"]: row for row in _rows(root)}
  assert rows["first_layer=free"]["status"] == "finished"
  assert rows["first_layer=gabor"]["status"].startswith("failed")
  again = _study(f"--workdir={root}", *FAST)
  assert "start first_layer=free" not in again.stdout  # finished: skipped
  assert "start first_layer=gabor" in again.stdout
  rows = _rows(root)
  assert [r["point"] for r in rows] == ["first_layer=free", "first_layer=gabor"]
  assert all(r["status"] == "finished" for r in rows)
  assert rows[1]["model.first_layer"] == "gabor" and rows[1]["workdir"] == "first_layer=gabor"
  with open(os.path.join(root, "first_layer=gabor", "run_info.json"), encoding="utf-8") as f:
    assert len(json.load(f)["starts"]) == 2  # resumed, not restarted
  with open(os.path.join(root, "first_layer=gabor", "metrics.jsonl"), encoding="utf-8") as f:
    steps = [e["step"] for e in map(json.loads, f) if "train/loss" in e]
  assert steps[-1] == 6
  _study(f"--workdir={root}", *FAST)
  assert len(_rows(root)) == 2


@pytest.mark.slow
def test_robustness_after_training_uses_the_configured_subsets_and_fills_the_results(tmp_path):
  root = str(tmp_path / "study")
  robust = [
    "--config.robustness.after_training=True",
    "--config.robustness.test_images=40",
    "--config.robustness.pgd_images=20",
  ]
  done = _study(f"--workdir={root}", *FAST, *robust, "model.first_layer=free")
  assert "[study] robustness of first_layer=free" in done.stdout
  assert done.stdout.count("[study] worker for slot 0") == 1  # evaluated in the training's worker
  with open(os.path.join(root, "first_layer=free", "robustness.json"), encoding="utf-8") as f:
    results = json.load(f)
  assert results["num_test_images"] == 40 and results["num_attack_images"] == 20
  row = next(r for r in _rows(root) if r["point"] == "first_layer=free")
  assert float(row["robustness_clean"]) == results["summary"]["clean"]
  with open(os.path.join(root, "first_layer=free", runner.TIMES_FILE), encoding="utf-8") as f:
    times = json.load(f)
  (train,), (robustness,) = times["train"], times["robustness"]
  assert train["exit"] == robustness["exit"] == 0
  assert float(row["wall_seconds"]) == train["wall_seconds"] > 0
  assert float(row["robustness_wall_seconds"]) == robustness["wall_seconds"] > 0
  again = _study(f"--workdir={root}", *FAST, *robust, "model.first_layer=free")
  assert "robustness of" not in again.stdout  # evaluated once


LONG = [
  "--config.train_for=4000steps",
  "--config.cpu_devices=1",
  "--config.log_every=20steps",
  "--config.eval_every=1000epochs",
  "--config.checkpoint.every=1000epochs",
]


def _study_process(root):
  """A study of one long tiny point, in a session of its own (as a shell would start it)."""
  return subprocess.Popen(
    [
      sys.executable,
      "-m",
      "hybridconv.studies.command",
      f"--config={SPEC}",
      f"--workdir={root}",
      *LONG,
      "model.first_layer=free",
    ],
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    start_new_session=True,
  )


def _wait_until_training(root, process) -> None:
  metrics = os.path.join(root, "first_layer=free", "metrics.jsonl")
  deadline = time.time() + 300
  while time.time() < deadline:  # until the point has trained a little
    if os.path.exists(metrics) and '"train/loss"' in open(metrics, encoding="utf-8").read():
      return
    assert process.poll() is None, process.communicate()
    time.sleep(0.1)
  raise AssertionError("the point never started training")


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  return True


def _worker_pid(stdout: str) -> int:
  return int(re.search(r"worker for slot 0: pid (\d+)", stdout).group(1))


# The ways a runner stops: the signals it handles, and SIGKILL, after which its worker is on
# its own.
STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL)


@pytest.mark.slow
def test_every_way_a_runner_stops_leaves_a_checkpoint_that_a_rerun_resumes(tmp_path):
  """One study per way its runner stops, side by side so that their start-ups overlap.

  SIGTERM, SIGINT and SIGHUP: the runner stops its worker, which saves a checkpoint; the
  runner prints one line and no traceback, exits 128 + the signal and records the point as
  stopped. SIGKILL: the runner dies at once; its worker notices and stops itself with a
  checkpoint. Every rerun resumes its point from that checkpoint (two starts, not a new run)
  and finishes it.
  """
  roots = {signum: str(tmp_path / signum.name) for signum in STOPS}
  processes = {signum: _study_process(root) for signum, root in roots.items()}
  for signum in STOPS:
    _wait_until_training(roots[signum], processes[signum])
  for signum, process in processes.items():
    process.send_signal(signum)
  for signum, process in processes.items():
    # The worker holds the runner's stdout: this returns once both have ended.
    stdout, stderr = process.communicate(timeout=300)
    worker = _worker_pid(stdout)
    if signum == signal.SIGKILL:
      for _ in range(600):
        if not _alive(worker):
          break
        time.sleep(0.1)
    else:
      assert process.returncode == 128 + signum.value, signum.name
      assert "Traceback" not in stderr and "Traceback" not in stdout, signum.name
      last = stdout.strip().splitlines()[-1]
      stopped = f"[study] stopped by {signum.name}: 1 running point(s) saved a checkpoint"
      assert last.startswith(stopped), last
      row = next(row for row in _rows(roots[signum]) if row["point"] == "first_layer=free")
      assert row["status"].startswith("stopped (exit"), signum.name
    assert not _alive(worker), signum.name
    assert os.listdir(os.path.join(roots[signum], "first_layer=free", "checkpoints"))

  reruns = {signum: _study_process(root) for signum, root in roots.items()}
  for signum, process in reruns.items():
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, signum.name + stderr[-2000:]
    row = next(row for row in _rows(roots[signum]) if row["point"] == "first_layer=free")
    assert row["status"] == "finished", signum.name
    info = os.path.join(roots[signum], "first_layer=free", run_layout.RUN_INFO_FILE)
    with open(info, encoding="utf-8") as f:
      assert len(json.load(f)["starts"]) == 2, signum.name  # resumed, not restarted


def test_a_command_line_factor_replaces_the_files_factor_of_the_same_key(tmp_path):
  lines = _study(
    f"--workdir={tmp_path}", "--grid", "model.first_layer=free,random", "--dry_run"
  ).stdout.splitlines()
  assert [line.split("--workdir=")[1].split()[0] for line in lines] == [
    f"{tmp_path}/first_layer=free",
    f"{tmp_path}/first_layer=random",
  ]
  done = subprocess.run(
    [
      sys.executable,
      "-m",
      "hybridconv.studies.command",
      "--config=configs/fashion_mnist.py:free",
      f"--workdir={tmp_path}",
      "--grid",
      "model.first_layer=free,random",
      "--grid",
      "seed=0,1",
      "--dry_run",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert len(done.stdout.splitlines()) == 4  # the file's 5 sources x 3 seeds are replaced


@pytest.mark.parametrize(
  ("args", "says"),
  [
    (["--grid", "data.train_size=100,-5"], "point first_layer=free,train_size=-5: data.train_size"),
    (
      ["--config.robustness.after_training=True", "--config.robustness.suite=nosuch"],
      "point first_layer=free: config.robustness.suite: unknown suite 'nosuch'",
    ),
  ],
)
def test_every_points_values_are_checked_before_any_trains(tmp_path, args, says):
  done = _study(f"--workdir={tmp_path / 'study'}", *args, check=False)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines() == [done.stderr.strip()]
  assert done.stderr.startswith(f"error: {says}")
  assert not os.path.exists(tmp_path / "study")
