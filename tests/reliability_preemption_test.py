"""SIGTERM/SIGINT: a checkpoint at the next safe point, a 'preempted' exit, an exact resume.

Signals come from the ``HYBRIDCONV_FAULT`` test hook (``hybridconv/training/faults.py``)
at the hard moments: while the train step compiles, during an evaluation,
while a checkpoint is being written. In-process runs see
:class:`preemption.Preempted`; the command line exits with status 143.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from hybridconv import tracking
from hybridconv.training import checkpointing, faults, preemption, train
from tests import reliability_support as rs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  return rs.reference(tmp_path_factory)


def _metadata(workdir, step):
  with open(
    os.path.join(workdir, "checkpoints", str(step), "metadata", "metadata"), encoding="utf-8"
  ) as f:
    return json.load(f)


@pytest.mark.parametrize(
  ("fault", "overrides", "stop_step", "signal_name"),
  [
    ("sigterm@compile", {}, 1, "SIGTERM"),  # while XLA compiles the first train step
    ("sigint@step:3", {}, 3, "SIGINT"),  # Ctrl-C between two log events
    # While checkpoint 4 is being written (synchronously, so that the signal
    # surely comes before the run ends; an asynchronous write may still be
    # running at the end, when a signal no longer matters).
    ("sigterm@save:4", {"checkpoint.async_save": False}, 5, "SIGTERM"),
  ],
  ids=["compile", "sigint", "during-save"],
)
@pytest.mark.slow
def test_signal_saves_at_next_step_and_resume_is_exact(
  fault, overrides, stop_step, signal_name, reference, tmp_path, monkeypatch
):
  workdir = str(tmp_path)
  monkeypatch.setenv(faults.ENV_VAR, fault)
  with pytest.raises(preemption.Preempted) as stop:
    train.train_and_evaluate(rs.config(**overrides), workdir)
  assert (stop.value.step, stop.value.signal_name) == (stop_step, signal_name)
  # Pending writes were finished before the exception: the checkpoint is committed.
  assert stop_step in checkpointing.existing_steps(os.path.join(workdir, "checkpoints"))
  monkeypatch.delenv(faults.ENV_VAR)
  final = train.train_and_evaluate(rs.config(), workdir)
  rs.assert_same_run(workdir, final, reference)


def test_signal_before_the_first_step_stops_without_training(tmp_path, monkeypatch):
  monkeypatch.setenv(faults.ENV_VAR, "sigterm@data")  # right after the dataset is loaded
  with pytest.raises(preemption.Preempted, match="at step 0 before training began") as stop:
    train.train_and_evaluate(rs.config(), str(tmp_path))
  assert stop.value.step == 0
  assert checkpointing.existing_steps(str(tmp_path / "checkpoints")) == []
  assert not os.path.exists(tmp_path / "metrics.jsonl") or not tracking.read_events(str(tmp_path))


@pytest.mark.slow
def test_signal_during_evaluation_resumes_with_that_evaluation(reference, tmp_path, monkeypatch):
  workdir = str(tmp_path)
  monkeypatch.setenv(faults.ENV_VAR, "sigterm@eval:4")
  with pytest.raises(preemption.Preempted) as stop:
    train.train_and_evaluate(rs.config(), workdir)
  assert stop.value.step == 4
  assert _metadata(workdir, 4)["eval"] == {}  # the evaluation was abandoned, not half-counted
  assert not [e for e in tracking.read_events(workdir) if "eval/accuracy" in e]
  monkeypatch.delenv(faults.ENV_VAR)
  final = train.train_and_evaluate(rs.config(), workdir)
  rs.assert_same_run(workdir, final, reference)
  evals = {e["step"]: e for e in tracking.read_events(workdir) if "eval/accuracy" in e}
  want = {e["step"]: e for e in tracking.read_events(reference[0]) if "eval/accuracy" in e}
  assert evals == want  # the resumed run evaluated step 4 first, with the same result


# Scalars that time the process rather than describe the run.
_TIMING_KEYS = ("train_seconds", "images_per_sec", "steps_per_sec")


def _records(workdir) -> tuple[list[dict], dict]:
  """The logged evaluations and the summary without its timings."""
  evals = [e for e in tracking.read_events(str(workdir)) if "eval/accuracy" in e]
  with open(os.path.join(str(workdir), "summary.json"), encoding="utf-8") as f:
    summary = {k: v for k, v in json.load(f).items() if k not in _TIMING_KEYS}
  return evals, summary


@pytest.mark.parametrize(
  ("fault", "overrides"),
  [
    ("sigterm@eval:8", {}),  # the final evaluation was abandoned: none logged
    ("sigterm@summary:8", {"tracking.filters_every": "0.5 epochs"}),  # after it was logged
  ],
  ids=["during-final-evaluation", "after-final-evaluation"],
)
@pytest.mark.slow
def test_stop_at_the_last_step_resumes_to_the_uninterrupted_records(
  fault, overrides, reference, tmp_path, monkeypatch
):
  """A run stopped at its last step, then resumed, logs the final evaluation once and writes
  the summary an uninterrupted run writes (its train means and validation readings too)."""
  if overrides:
    reference = (str(tmp_path / "reference"), None)
    reference = (reference[0], train.train_and_evaluate(rs.config(**overrides), reference[0]))
  workdir = str(tmp_path / "run")
  monkeypatch.setenv(faults.ENV_VAR, fault)
  with pytest.raises(preemption.Preempted) as stop:
    train.train_and_evaluate(rs.config(**overrides), workdir)
  assert stop.value.step == rs.TOTAL_STEPS
  assert not os.path.exists(os.path.join(workdir, "summary.json"))
  monkeypatch.delenv(faults.ENV_VAR)
  final = train.train_and_evaluate(rs.config(**overrides), workdir)
  rs.assert_same_run(workdir, final, reference)
  assert _records(workdir) == _records(reference[0])


@pytest.mark.slow
def test_command_line_exits_143_and_says_how_to_resume(reference, tmp_path):
  stopped = rs.run_cli(tmp_path, fault="sigterm@step:3")
  assert stopped.returncode == preemption.exit_code("SIGTERM") == 143, stopped.stderr[-2000:]
  assert (
    "preempted: stopped by SIGTERM at step 3 after saving a checkpoint; run the same "
    "command again to resume"
  ) in stopped.stderr
  assert "Traceback" not in stopped.stderr
  final = train.train_and_evaluate(rs.config(), str(tmp_path))
  rs.assert_same_run(tmp_path, final, reference)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_stop_at_the_same_step_when_one_is_signalled(tmp_path):
  """SIGTERM reaches process 1 only; both agree at the next log step (4) and save together."""
  address = f"127.0.0.1:{_free_port()}"
  processes = []
  for index in range(2):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=rs.ROOT)
    env.pop(faults.ENV_VAR, None)
    if index == 1:
      env[faults.ENV_VAR] = "sigterm@step:3"
    processes.append(
      subprocess.Popen(
        [
          sys.executable,
          "-m",
          "hybridconv.main",
          *rs.CLI_ARGS,
          f"--workdir={tmp_path}",
          f"--config.distributed.coordinator_address={address}",
          "--config.distributed.num_processes=2",
          f"--config.distributed.process_id={index}",
        ],
        cwd=rs.ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
      )
    )
  results = [p.communicate(timeout=400) for p in processes]
  codes = [p.returncode for p in processes]
  assert codes == [143, 143], [err[-2000:] for _, err in results]
  assert "stopped by a signal to another process at step 4" in results[0][1]
  assert "stopped by SIGTERM at step 4" in results[1][1]
  assert checkpointing.existing_steps(str(tmp_path / "checkpoints")) == [4]
  # The two-process checkpoint resumes (here on one process) and finishes.
  assert train.train_and_evaluate(rs.config(), str(tmp_path))["step"] == rs.TOTAL_STEPS
