"""A study's plan: its config file executed once, every point resolved and checked first."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from hybridconv import configlib, run_layout, sharding
from hybridconv.studies import plan, runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXECUTIONS = "HYBRIDCONV_TEST_CONFIG_EXECUTIONS"

# A config file that appends a line to the file named by $HYBRIDCONV_TEST_CONFIG_EXECUTIONS
# each time it is executed: configs/tiny.py, with the points given.
COUNTED = """
import os

from configs import tiny

with open(os.environ["{variable}"], "a", encoding="utf-8") as f:
  f.write("executed\\n")


def get_config(arg=None):
  return tiny.get_config(arg)


def study():
  yield from {points!r}
"""


def _counted(tmp_path, points) -> str:
  """The counting config file with ``points``, its executions counted in ``tmp_path``."""
  path = tmp_path / "counted.py"
  path.write_text(COUNTED.format(variable=EXECUTIONS, points=list(points)))
  return str(path)


def _executions(tmp_path) -> int:
  path = tmp_path / "executions.txt"
  return len(path.read_text().splitlines()) if path.exists() else 0


def _study(tmp_path, spec, *args):
  env = {**os.environ, EXECUTIONS: str(tmp_path / "executions.txt")}
  return subprocess.run(
    [sys.executable, "-m", "hybridconv.studies.command", f"--config={spec}", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    env=env,
    timeout=900,
  )


def test_load_study_executes_the_file_once_and_resolves_every_point(tmp_path, monkeypatch):
  monkeypatch.chdir(REPO)
  monkeypatch.setenv(EXECUTIONS, str(tmp_path / "executions.txt"))
  spec = _counted(tmp_path, [{"seed": 0}, {"seed": 1}, {"seed": 2}])
  study = plan.load_study(spec, {"model.first_layer": ["free", "gabor"]}, {"train_for": "2 steps"})
  assert _executions(tmp_path) == 1
  assert len(study.configs) == 6
  assert study.names[-1] == "seed=2,first_layer=gabor"
  for index, point in enumerate(study.points):
    # what `hybridconv train` builds from the point's --dry_run command line
    expected = configlib.load_config(spec)
    expected.lock()
    configlib.apply_overrides(expected, study.settings(index))
    config = study.config(index)
    assert config.to_dict() == expected.to_dict()
    assert (config.seed, config.model.first_layer) == (point["seed"], point["model.first_layer"])
    assert config.train_for == "2 steps" and config.tracking.wandb.group == "counted"
    assert config.tracking.wandb.tags == tuple(f"{k}={v}" for k, v in point.items())


@pytest.mark.parametrize(
  ("bad", "says"),
  [
    ({"label_smoothing": 1.5}, "config.label_smoothing=1.5 must be in [0, 1)"),
    ({"robustness.test_images": -1}, "config.robustness.test_images=-1 must be an int >= 0"),
  ],
  ids=["label_smoothing", "robustness"],
)
@pytest.mark.parametrize("mode", ["run", "--dry_run"])
def test_a_bad_value_in_the_last_point_is_refused_before_the_first_trains(
  tmp_path, bad, says, mode
):
  spec = _counted(tmp_path, [{"seed": 0}, {"seed": 1}, {"seed": 2, **bad}])
  root = tmp_path / "study"
  args = ["--config.train_for=2steps", "--config.cpu_devices=1"]
  done = _study(tmp_path, spec, f"--workdir={root}", *args, *([mode] if mode != "run" else []))
  assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
  (line,) = done.stderr.strip().splitlines()
  assert line.startswith(f"error: point seed=2: {says}")
  assert not done.stdout  # no command printed, no point started
  assert not root.exists()  # no point has a workdir, let alone a checkpoint or summary
  assert _executions(tmp_path) == 1


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["--jobs=2", "--one_process_per_point"])
def test_a_study_executes_its_config_file_once(tmp_path, mode):
  """Also: two slots on a CPU split its cores, so each point's automatic device count
  (``cpu_devices=0``: one per core it may use) is its slot's share."""
  spec = _counted(tmp_path, [{"seed": 0}, {"seed": 1}])
  root = tmp_path / "study"
  devices = "0" if mode == "--jobs=2" else "1"
  args = ["--config.train_for=2steps", f"--config.cpu_devices={devices}"]
  done = _study(tmp_path, spec, f"--workdir={root}", *args, mode)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
  assert _executions(tmp_path) == 1  # not again in the workers, nor for each point's settings
  if mode == "--jobs=2":
    assert done.stdout.count("[study] worker for slot 0") == 1
    assert done.stdout.count("[study] worker for slot 1") == 1
  else:
    assert done.stdout.count("[study] worker for slot 0") == 2
  with open(root / run_layout.RESULTS_FILE, encoding="utf-8") as f:
    assert [row["status"] for row in csv.DictReader(f)] == ["finished", "finished"]
  if mode == "--jobs=2":  # seed=0 starts on slot 0, seed=1 on slot 1
    cores = os.sched_getaffinity(0)
    for slot, name in enumerate(("seed=0", "seed=1")):
      share = runner.slot_cores(cores, 2, slot) or cores
      with open(root / name / run_layout.RUN_INFO_FILE, encoding="utf-8") as f:
        (start,) = json.load(f)["starts"]
      # tiny: batch 32, eval batch 64 (on 2 cores: 1 device each, where unpinned takes 2)
      assert start["devices"]["count"] == sharding.cpu_device_count(0, (32, 64), len(share))
      assert start["cpu"]["cores"] == len(share) and start["cpu"]["model"]


def test_slots_share_the_cores_in_contiguous_parts():
  assert runner.slot_cores({0, 1}, 1, 0) is None  # one slot keeps every core
  assert runner.slot_cores({0, 1}, 3, 0) is None  # fewer cores than slots: no pinning
  assert [runner.slot_cores({0, 1}, 2, s) for s in (0, 1)] == [{0}, {1}]
  cores = {4, 5, 6, 7, 8, 9, 10}  # 7 cores, 3 slots: 3 + 2 + 2, none shared, none left out
  shares = [runner.slot_cores(cores, 3, s) for s in range(3)]
  assert shares == [{4, 5, 6}, {7, 8}, {9, 10}]
