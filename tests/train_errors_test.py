"""Mistakes fail fast: one clear message naming the key and what is allowed, nothing compiled."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import pytest

from hybridconv.training import command, train
from tests.conftest import make_tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _no_train_step(monkeypatch):
  """Tracing the train step would mean the error came too late."""

  def fail(*args, **kwargs):
    raise AssertionError("the train step was traced before the configuration error")

  monkeypatch.setattr(train, "train_step", fail)


def _config(**overrides):
  return make_tiny_config("hybrid", **overrides)


@pytest.mark.parametrize(
  ("overrides", "message"),
  [
    (
      {"batch_size": 0},
      r"config.batch_size=0 must be a positive multiple of the number of "
      r"devices",
    ),
    (
      {"compute_dtype": "float16"},
      r"config.compute_dtype='float16' is not one of "
      r"\('float32', 'bfloat16'\)",
    ),
    ({"cpu_devices": -1}, r"config.cpu_devices=-1 must be an int >= 0"),
    ({"label_smoothing": 1.0}, r"config.label_smoothing=1.0 must be in \[0, 1\)"),
    ({"eval_every": "0 epochs"}, r"config.eval_every='0 epochs' must be longer than zero"),
    ({"eval_every": "5"}, r"config.eval_every='5' is not a duration; allowed: '<n> steps'"),
    ({"train_for": "50%"}, r"config.train_for='50%' is not a duration; allowed: '<n> steps', "),
    ({"tracking.filters_every": "often"}, r"config.tracking.filters_every='often' is not a dur"),
    ({"optim.name": "rmsprop"}, r"config.optim.name='rmsprop' is not one of"),
    (
      {"data.source": "hdf5"},
      r"data.source must be one of \('idx', 'tfds', 'gratings', "
      r"'imagefolder'\), got 'hdf5'",
    ),
    ({"model.name": "resnet9000"}, r"model.name='resnet9000' is not one of \[.*'simple_cnn'"),
    ({"model.first_layer": "gabbor"}, r"unknown kernel source 'gabbor'; allowed: .*'gabor'"),
  ],
  ids=lambda x: next(iter(x)) if isinstance(x, dict) else None,
)
def test_bad_setting_fails_before_compiling(overrides, message, tmp_path):
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(_config(**overrides), str(tmp_path))
  assert not os.path.exists(os.path.join(tmp_path, "checkpoints"))


def test_missing_dataset_names_the_directory(tmp_path):
  missing = os.path.join(tmp_path, "no_such_dir")
  config = _config(**{"data.source": "idx", "data.name": "fashion_mnist", "data.data_dir": missing})
  with pytest.raises(
    FileNotFoundError, match=r"fashion_mnist IDX files not found in .*no_such_dir"
  ):
    train.train_and_evaluate(config, str(tmp_path / "work"))


@pytest.mark.slow
def test_batch_not_divisible_by_devices_is_one_line_from_the_cli(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="4")
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "hybridconv.main",
      "--config=configs/tiny.py",
      f"--workdir={tmp_path}",
      "--config.batch_size=30",
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert errors == [
    "error: config.batch_size=30 must be a positive multiple of the number of devices "
    "(4: 1 process(es) x 4 local device(s)); e.g. 32"
  ]
  assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_bad_cpu_devices_is_one_line_from_the_cli_before_jax_starts(tmp_path):
  env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "hybridconv.main",
      "--config=configs/tiny.py",
      f"--workdir={tmp_path}",
      "--config.cpu_devices=-2",
    ],
    cwd=ROOT,
    env=env | {"JAX_PLATFORMS": "cpu"},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert errors == [
    "error: config.cpu_devices=-2 must be an int >= 0 (0 = one per core, 1 = a single CPU device)"
  ]
  assert "Traceback" not in result.stderr and not os.listdir(tmp_path)


def _cli(*args, module="hybridconv.main"):
  return subprocess.run(
    [sys.executable, "-m", module, *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )


def _one_error_line(result, start: str) -> None:
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr[-2000:]
  assert result.stderr.startswith(f"error: {start}"), result.stderr


@pytest.mark.parametrize(
  ("module", "args", "start"),
  [
    (
      "hybridconv.main",
      ["--config=configs/missing.py", "--config.seed=1"],
      "--config='configs/missing.py': no config file",
    ),
    (
      "hybridconv.studies.command",
      ["--config=configs/tiny.py", "--grid", "data.train_size=200,abc", "--dry_run"],
      "point first_layer=free,train_size=abc: override data.train_size='abc': a str where the "
      "key holds an int",
    ),
  ],
)
def test_bad_command_lines_are_one_error_line(module, args, start, tmp_path):
  _one_error_line(_cli(*args, f"--workdir={tmp_path / 'run'}", module=module), start)
  assert not os.path.exists(tmp_path / "run")


@pytest.mark.slow
def test_every_checkpoint_damaged_is_one_error_line_and_nothing_moves(tmp_path):
  workdir = str(tmp_path / "run")
  assert _cli("--config=configs/tiny.py", f"--workdir={workdir}").returncode == 0
  checkpoints = os.path.join(workdir, "checkpoints")
  for step in os.listdir(checkpoints):  # garble every array chunk of every checkpoint
    for folder, _, files in os.walk(os.path.join(checkpoints, step, "state")):
      for name in files:
        path = os.path.join(folder, name)
        if os.sep + "d" + os.sep in path + os.sep and os.path.getsize(path) > 40:
          with open(path, "r+b") as f:
            f.seek(20)
            f.write(b"garbage-garbage")
  before = sorted(os.listdir(checkpoints))
  result = _cli("--config=configs/tiny.py", f"--workdir={workdir}")
  _one_error_line(result, f"none of the 2 checkpoint(s) in {checkpoints} can be restored")
  assert sorted(os.listdir(checkpoints)) == before


def test_abandoned_checkpoint_reads_are_not_logged_beside_the_error_line():
  # A damaged checkpoint makes orbax abandon the reads beside the failing one; asyncio logs
  # their exceptions when the futures are collected, at a moment that races the error line.
  noise = command.LibraryNoiseFilter()

  def record(name, level, msg):
    return logging.LogRecord(name, level, "/x/asyncio/base_events.py", 1, msg, None, None)

  assert not noise.filter(record("asyncio", logging.ERROR, "Future exception was never retrieved"))
  assert not noise.filter(record("asyncio", logging.ERROR, "Task exception was never retrieved"))
  assert noise.filter(record("asyncio", logging.ERROR, "Task was destroyed but it is pending!"))
  assert noise.filter(record("hybridconv", logging.ERROR, "Future exception was never retrieved"))


def test_unawaited_coroutines_of_abandoned_reads_are_not_reported_at_exit():
  with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    command.quiet_library_logs()
    warnings.warn(
      "coroutine 'Store._get_array_metadatas' was never awaited", RuntimeWarning, stacklevel=1
    )
    warnings.warn("another warning", RuntimeWarning, stacklevel=1)
  assert [str(w.message) for w in seen] == ["another warning"]
