"""Every bad input is refused before any work: exit 2, one ``error:`` line naming the value.

The command-line cases run ``python -m hybridconv.main`` (and ``hybridconv
train``) as a user would; the workdir lock and the JSONL repair are also
checked in this process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from hybridconv.tracking import jsonl_logger
from hybridconv.training import train
from hybridconv.training import workdir as workdir_lib
from tests.conftest import make_tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, module="hybridconv.main"):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
    [sys.executable, "-m", module, *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )


def _one_error(result) -> str:
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, result.stderr[-2000:]
  return errors[0]


@pytest.mark.parametrize(
  "command", [("hybridconv.main",), ("hybridconv.cli", "train")], ids=["main", "cli-train"]
)
def test_unknown_variant(command, tmp_path):
  module, *first = command
  error = _one_error(
    _run(*first, "--config=configs/fashion_mnist.py:gabbor", f"--workdir={tmp_path}", module=module)
  )
  assert error.startswith(
    "error: --config=configs/fashion_mnist.py:gabbor: unknown config "
    "variant 'gabbor': give at most one kernel source of ('free', 'gabor'"
  )
  assert not os.listdir(tmp_path)


def test_missing_config_file(tmp_path):
  error = _one_error(_run("--config=configs/nope.py", f"--workdir={tmp_path}"))
  assert error == "error: --config='configs/nope.py': no config file 'configs/nope.py'"


@pytest.mark.parametrize(
  ("override", "expected"),
  [
    (
      "--config.batch_size=abc",
      "error: --config.batch_size='abc' is not an int; allowed: an int like the default 32",
    ),
    (
      "--config.optim.learning_rate=fast",
      "error: --config.optim.learning_rate='fast' is not a float; allowed: a float like the "
      "default 0.002",
    ),
  ],
)
def test_value_of_the_wrong_type(override, expected, tmp_path):
  assert _one_error(_run("--config=configs/tiny.py", f"--workdir={tmp_path}", override)) == expected
  assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_workdir_that_is_a_file(tmp_path):
  path = tmp_path / "run"
  path.write_text("my notes")
  error = _one_error(_run("--config=configs/tiny.py", f"--workdir={path}"))
  assert error == (
    f"error: --workdir {str(path)!r} is an existing file; allowed: a directory, "
    "or a path that does not exist yet"
  )
  assert path.read_text() == "my notes"


def test_checkpoints_that_is_a_file_fails_before_training(tmp_path, monkeypatch):
  (tmp_path / "checkpoints").write_text("not a folder")

  def fail(*args, **kwargs):
    raise AssertionError("the train step was traced before the workdir error")

  monkeypatch.setattr(train, "train_step", fail)
  with pytest.raises(
    ValueError,
    match=r"the checkpoint folder '.*/checkpoints' is an existing "
    r"file; allowed: a directory",
  ):
    train.train_and_evaluate(make_tiny_config(), str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["checkpoints"]


_HOLDER = textwrap.dedent("""
    import sys, time
    from hybridconv.training import workdir
    with workdir.exclusive(sys.argv[1]):
      print("locked", flush=True)
      time.sleep(600)
""")


def _hold_lock(workdir) -> subprocess.Popen:
  holder = subprocess.Popen(
    [sys.executable, "-c", _HOLDER, str(workdir)],
    cwd=ROOT,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
    stdout=subprocess.PIPE,
    text=True,
  )
  assert holder.stdout.readline().strip() == "locked"
  return holder


@pytest.mark.slow
def test_second_run_into_a_held_workdir_is_refused_naming_the_holder(tmp_path):
  holder = _hold_lock(tmp_path)
  try:
    error = _one_error(_run("--config=configs/tiny.py", f"--workdir={tmp_path}"))
    assert error.startswith(
      f"error: --workdir={str(tmp_path)!r} is in use by another run "
      f"(process {holder.pid}); allowed:"
    )
    assert not os.path.exists(tmp_path / "metrics.jsonl")
    assert not os.path.exists(tmp_path / "checkpoints")
  finally:
    holder.send_signal(signal.SIGKILL)  # a killed run must not block its own resume
    holder.wait()
  with workdir_lib.exclusive(str(tmp_path)):
    pass


def test_lock_is_held_for_the_run_and_released_after(tmp_path):
  with workdir_lib.exclusive(str(tmp_path)):
    with pytest.raises(ValueError, match=rf"is in use by another run \(process {os.getpid()}\)"):
      train.train_and_evaluate(make_tiny_config(), str(tmp_path))
  with workdir_lib.exclusive(str(tmp_path)):  # released by the refused call too
    pass


def test_partial_last_line_is_cut_before_appending(tmp_path):
  path = tmp_path / jsonl_logger.METRICS_FILE
  path.write_text('{"step": 2, "train/loss": 1.5}\n{"step": 4, "train/lo')
  logger = jsonl_logger.JsonlLogger(str(tmp_path))
  logger.log_scalars(4, {"train/loss": 1.25})
  logger.close()
  lines = path.read_text().splitlines()
  assert [json.loads(line) for line in lines] == [
    {"step": 2, "train/loss": 1.5},
    {"step": 4, "train/loss": 1.25},
  ]


@pytest.mark.parametrize(
  ("content", "kept"),
  [
    ("", ""),
    ('{"step": 1}\n', '{"step": 1}\n'),
    ('{"st', ""),
    ('{"step": 1}\n' + "x" * 70000, '{"step": 1}\n'),  # partial line longer than one read block
  ],
)
def test_drop_partial_last_line(content, kept, tmp_path):
  path = tmp_path / "m.jsonl"
  path.write_text(content)
  jsonl_logger.drop_partial_last_line(str(path))
  assert path.read_text() == kept
