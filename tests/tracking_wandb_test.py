"""Tests of the W&B backend: offline end to end, fallback without network, never blocking.

W&B runs behind :class:`writers.BackgroundWriter` as in training, so the tests
of queueing, dropping, failures and bounded close go through that wrapper.
No test reaches the network: WANDB_BASE_URL points at a closed local port,
the API key is removed and W&B's directories are temporary.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from configs import default
from hybridconv import tracking
from hybridconv.tracking import wandb_logger, writers

QUIET = {"x_disable_stats": True, "console": "off"}


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
  for var in (
    "WANDB_API_KEY",
    "WANDB_MODE",
    "WANDB_ENTITY",
    "WANDB_PROJECT",
    "WANDB_RUN_ID",
    "WANDB_RESUME",
    "WANDB_NAME",
  ):
    monkeypatch.delenv(var, raising=False)
  for var, sub in (
    ("WANDB_DIR", "wandb_dir"),
    ("WANDB_CONFIG_DIR", "wandb_config"),
    ("WANDB_CACHE_DIR", "wandb_cache"),
    ("WANDB_DATA_DIR", "wandb_data"),
  ):
    os.makedirs(tmp_path / sub, exist_ok=True)
    monkeypatch.setenv(var, str(tmp_path / sub))
  monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
  monkeypatch.setenv("WANDB_SILENT", "true")
  monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
  return tmp_path


def read_wandb_records(run_dir: str, timeout: float = 30.0) -> list:
  """Records of an offline run's ``.wandb`` file, once its final 'exit' record is there.

  wandb-core may still be writing the file for a moment after ``run.finish()``
  returns, so this polls until the run's 'exit' record has arrived.
  """
  deadline = time.monotonic() + timeout
  while True:
    records = _parse_wandb_file(run_dir)
    if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
      return records
    time.sleep(0.1)


def _parse_wandb_file(run_dir: str) -> list:
  """W&B's ``.wandb`` format: a LevelDB-style log of ``Record`` protobufs in 32 KiB blocks."""
  from wandb.proto import wandb_internal_pb2

  (path,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
  raw = open(path, "rb").read()
  assert raw[:4] == b":W&B"
  block, pos, pending, records = 32768, 7, b"", []
  while pos + 7 <= len(raw):
    left = block - pos % block
    if left < 7:  # block trailer
      pos += left
      continue
    _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
    if length == 0 and kind == 0:
      pos += left
      continue
    data, pos = raw[pos + 7 : pos + 7 + length], pos + 7 + length
    if kind == 1:  # full
      records.append(data)
    elif kind == 2:  # first
      pending = data
    elif kind == 3:  # middle
      pending += data
    elif kind == 4:  # last
      records.append(pending + data)
  parsed = []
  for data in records:
    record = wandb_internal_pb2.Record()
    record.ParseFromString(data)
    parsed.append(record)
  return parsed


def history(records) -> list[dict]:
  rows = []
  for record in records:
    if record.WhichOneof("record_type") == "history":
      rows.append(
        {
          item.key or "/".join(item.nested_key): json.loads(item.value_json)
          for item in record.history.item
        }
      )
  return rows


def _log_a_run(logger):
  logger.log_config({"model": {"name": "simple_cnn"}})
  logger.log_scalars(1, {"train/loss": 0.75})
  logger.log_images(
    1,
    {
      "filters/conv1": np.full((9, 12, 3), 100, np.uint8),
      "filters/conv2": np.full((5, 5, 1), 30, np.uint8),
    },
  )
  logger.log_histograms(
    1,
    {
      "gabor/conv1/theta": np.linspace(0, 3, 40),
      "filters/conv1/orientation_energy": tracking.Histogram(
        np.array([0.5, 0.5]), np.array([0.0, 90.0, 180.0])
      ),
    },
  )
  logger.log_table(1, "gabor/conv1", ["filter", "theta"], [[0, 0.5], [1, 1.5]])
  logger.log_scalars(2, {"train/loss": 0.5, "eval/accuracy": 0.9})


def _run_dir(directory, prefix="offline-run-"):
  (run_dir,) = glob.glob(os.path.join(directory, "wandb", prefix + "*"))
  return run_dir


def test_offline_logger_records_every_kind_without_network(wandb_env):
  workdir = wandb_env / "run"
  checkpoint = wandb_env / "checkpoint.bin"
  checkpoint.write_bytes(b"weights")
  wandb = wandb_logger.WandbLogger(
    project="hybridconv-test",
    mode="offline",
    directory=str(workdir),
    init_timeout=30,
    settings=QUIET,
  )
  logger = writers.BackgroundWriter(wandb)
  _log_a_run(logger)
  logger.log_artifact(f"file://{checkpoint}", "checkpoint 2", "model")
  logger.close()
  assert wandb.mode == "offline" and logger.dropped == 0 and logger.errors == 0
  rows = history(read_wandb_records(_run_dir(str(workdir))))
  assert [(r["_step"], r.get("train/loss")) for r in rows] == [(1, 0.75), (2, 0.5)]
  first = rows[0]
  assert first["filters/conv1/_type"] == "image-file"
  assert (first["filters/conv1/width"], first["filters/conv1/height"]) == (12, 9)
  assert first["filters/conv2/_type"] == "image-file"
  assert first["gabor/conv1/theta/_type"] == "histogram"
  assert sum(first["gabor/conv1/theta/values"]) == 40
  assert first["filters/conv1/orientation_energy/values"] == [0.5, 0.5]
  assert first["gabor/conv1/_type"] == "table-file" and first["gabor/conv1/nrows"] == 2
  assert rows[1]["eval/accuracy"] == 0.9
  records = read_wandb_records(_run_dir(str(workdir)))
  kinds = [r.WhichOneof("record_type") for r in records]
  assert "artifact" in kinds and "config" in kinds
  images = glob.glob(
    os.path.join(_run_dir(str(workdir)), "files", "media", "images", "**", "*.png"), recursive=True
  )
  assert len(images) == 2


@pytest.mark.parametrize("api_key", [None, "x" * 40], ids=["no_api_key", "unreachable_server"])
@pytest.mark.slow
def test_online_without_network_falls_back_to_offline_in_bounded_time(
  wandb_env, monkeypatch, api_key
):
  if api_key:
    monkeypatch.setenv("WANDB_API_KEY", api_key)
  workdir = wandb_env / "run"
  start = time.monotonic()
  wandb = wandb_logger.WandbLogger(
    project="hybridconv-test", mode="online", directory=str(workdir), init_timeout=2, settings=QUIET
  )
  logger = writers.BackgroundWriter(wandb, close_timeout_s=60)
  _log_a_run(logger)
  enqueued = time.monotonic() - start
  logger.close()
  elapsed = time.monotonic() - start
  assert enqueued < 1.0  # the training loop never waits for wandb.init
  assert elapsed < 60 and not logger._thread.is_alive()  # finished, not given up on
  assert wandb.mode == "offline"
  rows = history(read_wandb_records(_run_dir(str(workdir))))
  assert [r["_step"] for r in rows] == [1, 2]


def test_make_logger_sends_to_workdir_and_wandb_offline(wandb_env):
  config = default.get_config().tracking
  config.wandb.mode = "offline"
  config.wandb.init_timeout = 30.0
  workdir = str(wandb_env / "run")
  logger = tracking.make_logger(config, workdir, is_main_process=True, config={"seed": 3})
  assert [type(x).__name__ for x in logger.loggers] == ["JsonlLogger", "BackgroundWriter"]
  assert isinstance(logger.loggers[1].writer, wandb_logger.WandbLogger)
  logger.log_scalars(4, {"train/loss": 1.5})
  logger.close()
  assert tracking.read_metrics(workdir)["train/loss"][1].tolist() == [1.5]
  records = read_wandb_records(_run_dir(workdir))
  assert [r["train/loss"] for r in history(records)] == [1.5]


def test_a_resumed_run_in_the_same_workdir_continues_the_same_wandb_run(wandb_env):
  config = default.get_config().tracking
  config.wandb.mode = "offline"
  workdir = str(wandb_env / "run")
  run_ids = []
  for step in (4, 9):  # first attempt, then the resumed one
    logger = tracking.make_logger(config, workdir, is_main_process=True, config={"seed": 3})
    wandb_run = logger.loggers[1].writer
    logger.log_scalars(step, {"train/loss": 1.0 / step})
    logger.close()
    assert wandb_run.mode == "offline"
    run_ids.append(wandb_run.run.id)
  run_id = open(os.path.join(workdir, "wandb_run_id")).read().strip()
  assert run_ids == [run_id, run_id]
  run_dirs = glob.glob(os.path.join(workdir, "wandb", "offline-run-*"))
  assert run_dirs and all(f"-{run_id}" in os.path.basename(d) for d in run_dirs)
  other = str(wandb_env / "other")
  tracking.make_logger(config, other, is_main_process=True).close()
  assert open(os.path.join(other, "wandb_run_id")).read().strip() != run_id


class _FakeRun:
  def __init__(self, fail=False):
    self.logged, self.finished, self.fail = [], False, fail
    self.dir = "/nonexistent/files"

  def log(self, data, step=None):
    if self.fail:
      raise RuntimeError("connection reset")
    self.logged.append((step, data))

  def finish(self):
    self.finished = True


def _messages(caplog) -> list[str]:
  return [r.getMessage() for r in caplog.records]


def test_a_failing_wandb_never_raises_into_the_training_loop(monkeypatch, caplog):
  run = _FakeRun(fail=True)
  monkeypatch.setattr(wandb_logger.WandbLogger, "_init_run", lambda self, wandb, mode: run)
  logger = writers.BackgroundWriter(
    wandb_logger.WandbLogger(project="p", mode="offline", settings=QUIET)
  )
  with caplog.at_level(logging.WARNING):
    for step in range(3):
      logger.log_scalars(step, {"train/loss": 1.0})
    logger.close()
  assert run.finished
  assert logger.errors == 3  # every call failed ...
  assert len([m for m in _messages(caplog) if "connection reset" in m]) == 1  # ... reported once


def test_a_stuck_wandb_drops_events_and_close_returns_in_bounded_time(monkeypatch, caplog):
  release, entered = threading.Event(), threading.Event()

  def stuck_init(self, wandb, mode):
    entered.set()
    release.wait(30)
    return _FakeRun()

  monkeypatch.setattr(wandb_logger.WandbLogger, "_init_run", stuck_init)
  logger = writers.BackgroundWriter(
    wandb_logger.WandbLogger(project="p", mode="offline"), max_queue=4, close_timeout_s=0.5
  )
  try:
    with caplog.at_level(logging.WARNING):
      start = time.monotonic()
      logger.log_scalars(0, {"train/loss": 0.0})  # the worker takes it and sticks in wandb.init
      enqueueing = time.monotonic() - start
      assert entered.wait(30)
      start = time.monotonic()
      for step in range(1, 50):
        logger.log_scalars(step, {"train/loss": float(step)})
      enqueueing += time.monotonic() - start
      assert enqueueing < 0.5  # enqueueing never waits for W&B
      assert logger.dropped == 45  # 4 queued behind the stuck event
      start = time.monotonic()
      logger.close()
      assert time.monotonic() - start < 3
      logger.log_scalars(60, {"train/loss": 0.0})  # after close: ignored, no error
    assert logger.dropped == 45
  finally:
    release.set()
  assert len([m for m in _messages(caplog) if "not keeping up" in m]) == 1  # one warning
  assert any("did not finish within" in m for m in _messages(caplog))


def test_disabled_mode_starts_nothing_and_ignores_calls(monkeypatch):
  def start(self):
    raise AssertionError("a disabled W&B logger imported or initialised wandb")

  monkeypatch.setattr(wandb_logger.WandbLogger, "_start", start)
  logger = wandb_logger.WandbLogger(project="p", mode="disabled")
  _log_a_run(logger)
  logger.close()
  assert logger.run is None and logger.mode == "disabled"


@pytest.mark.parametrize(
  "kwargs, message",
  [
    ({"mode": "cloud"}, "tracking.wandb.mode='cloud'"),
    ({"init_timeout": 0}, "init_timeout must be > 0"),
    ({"project": ""}, "tracking.wandb.project"),
  ],
)
def test_bad_settings_are_refused_before_anything_starts(kwargs, message):
  with pytest.raises(ValueError, match=message):
    wandb_logger.WandbLogger(**{"project": "p", **kwargs})


def test_artifact_names_are_made_valid():
  assert wandb_logger.artifact_name("checkpoint 100/best") == "checkpoint-100-best"
  with pytest.raises(ValueError, match="no usable characters"):
    wandb_logger.artifact_name("///")


@pytest.mark.slow
def test_importing_the_library_does_not_import_wandb():
  code = (
    "import sys, hybridconv.tracking, hybridconv.reports.run_report; "
    "print(sorted(m for m in sys.modules "
    "if m.split('.')[0] in ('wandb', 'wandb_workspaces')))"
  )
  out = subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    check=True,
    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  )
  assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_filter_animations_reach_wandb_as_gifs(wandb_env):
  workdir = str(wandb_env / "run")
  config = default.get_config().tracking
  logger = tracking.make_logger(config, workdir, is_main_process=True)
  for step, value in ((0, 60), (5, 200)):
    logger.log_images(step, {"filters/conv1": np.full((9, 12, 3), value, np.uint8)})
  gifs = tracking.log_animations(logger, workdir, 5)
  logger.close()
  assert gifs == [os.path.join(workdir, "filters", "conv1.gif")]
  rows = history(read_wandb_records(_run_dir(workdir)))
  last = [r for r in rows if r["_step"] == 5][0]
  assert last["filters_gif/conv1/_type"] == "video-file"
  videos = glob.glob(
    os.path.join(_run_dir(workdir), "files", "media", "videos", "**", "*.gif"), recursive=True
  )
  assert len(videos) == 1
  with open(videos[0], "rb") as copy, open(gifs[0], "rb") as original:
    assert copy.read() == original.read()
