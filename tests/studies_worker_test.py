"""The study runner's worker: points trained in one process equal the `hybridconv train` runs
that ``--dry_run`` prints."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time

import pytest

from hybridconv import configlib, run_layout
from hybridconv.studies import runner, worker

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = "configs/tiny.py"
TIMING = re.compile(r"sec|time")


def _python(*argv):
  """``python -m <argv>`` from the repository; the finished process (asserted to succeed)."""
  done = subprocess.run(
    [sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=900
  )
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
  return done


def _study(root, *args):
  steps = "--config.train_for=4steps"
  return _python(
    "hybridconv.studies.command", f"--config={SPEC}", f"--workdir={root}", steps, *args
  )


def _records(workdir):
  """config.json and metrics.jsonl without wall-clock entries."""
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    config = json.load(f)
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    metrics = [{k: v for k, v in json.loads(line).items() if not TIMING.search(k)} for line in f]
  return config, metrics


@pytest.mark.slow
def test_one_worker_trains_the_points_exactly_as_the_dry_run_commands(tmp_path):
  pooled = _study(tmp_path / "worker")  # configs/tiny.py's study(): free and gabor
  assert pooled.stdout.count("[study] worker for slot 0") == 1  # both points in one process
  commands = _study(tmp_path / "commands", "--dry_run").stdout.splitlines()
  assert len(commands) == 2
  for line in commands:  # as a user pastes them into a shell
    argv = shlex.split(line)
    assert argv[1:3] == ["-m", "hybridconv.main"]
    _python(*argv[2:])
  for point in ("first_layer=free", "first_layer=gabor"):
    assert _records(tmp_path / "worker" / point) == _records(tmp_path / "commands" / point)
    with open(tmp_path / "worker" / point / run_layout.TIMES_FILE, encoding="utf-8") as f:
      ((attempt,),) = json.load(f).values()
    assert attempt["exit"] == 0 and attempt["wall_seconds"] > 0


@pytest.mark.slow
def test_a_point_needing_another_device_count_gets_a_fresh_worker(tmp_path):
  done = _study(tmp_path / "study", "--grid", "cpu_devices=1,2", "model.first_layer=free")
  assert done.stdout.count("[study] worker for slot 0") == 2
  for count in (1, 2):
    (workdir,) = (tmp_path / "study").glob(f"*cpu_devices={count}*")
    with open(workdir / "run_info.json", encoding="utf-8") as f:
      assert json.load(f)["starts"][0]["devices"]["count"] == count


@pytest.mark.slow
def test_a_finished_points_robustness_in_a_fresh_worker_equals_the_command_line(tmp_path):
  root = tmp_path / "study"
  _study(root, "model.first_layer=free", "--config.cpu_devices=1")
  robust = ["--config.robustness.test_images=40", "--config.robustness.pgd_images=20"]
  done = _study(
    root,
    "model.first_layer=free",
    "--config.cpu_devices=1",
    "--config.robustness.after_training=True",
    *robust,
  )
  assert "start first_layer=free" not in done.stdout  # finished: only evaluated
  assert "[study] robustness of first_layer=free" in done.stdout
  assert done.stdout.count("[study] worker for slot 0") == 1  # its first request: evaluate
  workdir = root / "first_layer=free"
  with open(workdir / "robustness.json", encoding="utf-8") as f:
    pooled = json.load(f)
  os.rename(workdir / "robustness.json", tmp_path / "pooled.json")
  _python(
    "hybridconv.cli",
    "evaluate",
    *runner.robustness_arguments(str(workdir), suite="default", pgd_images=20, test_images=40),
  )
  with open(workdir / "robustness.json", encoding="utf-8") as f:
    assert json.load(f)["entries"] == pooled["entries"]


def _answer(client, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline:
    answer = client.poll()
    if answer is not None:
      return answer
    time.sleep(0.05)
  raise AssertionError("the worker did not answer")


def _env():
  return runner.child_environment(REPO, 0, "")


def _config(**settings) -> str:
  """configs/tiny.py with ``settings``, resolved as the runner hands it to a worker."""
  config = configlib.load_config(SPEC)
  config.lock()
  return configlib.to_literal(configlib.apply_overrides(config, settings))


@pytest.mark.slow
def test_the_worker_answers_restart_without_running_a_point_it_cannot_take(tmp_path):
  client = worker.Client(_env())
  client.send(str(tmp_path / "a"), _config(train_for="2 steps", cpu_devices=1))
  assert _answer(client) == {"exit": 0}
  client.send(str(tmp_path / "b"), _config(train_for="2 steps", cpu_devices=2))
  assert _answer(client) == {"restart": True}
  assert client.process.wait(timeout=60) == 0
  assert not (tmp_path / "b").exists()  # nothing ran
  client.close()


@pytest.mark.slow
def test_a_bad_value_is_exit_2_and_ends_the_worker(tmp_path, capfd):
  client = worker.Client(_env())
  client.send(str(tmp_path / "a"), _config(train_for="abc"))
  assert _answer(client) == {"exit": 2}
  assert client.process.wait(timeout=60) == 2
  client.close()
  assert not (tmp_path / "a").exists()
  err = capfd.readouterr().err
  assert "error:" in err and "train_for" in err


@pytest.mark.slow
def test_a_killed_point_is_answered_with_the_signal(tmp_path):
  client = worker.Client({**_env(), "HYBRIDCONV_FAULT": "kill@step:3"})
  client.send(str(tmp_path / "a"), _config(train_for="6 steps"))
  assert _answer(client) == {"exit": -9}
  client.close()
