"""A tracker that fails, hangs or cannot reach its server never stops or stalls training.

The train loop's extra ``writer`` runs behind :class:`writers.BackgroundWriter`,
as W&B does; ``metrics.jsonl`` in the workdir gets every event regardless.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from hybridconv import tracking
from hybridconv.tracking import wandb_logger, writers
from hybridconv.training import train
from tests import reliability_support as rs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  return rs.reference(tmp_path_factory)


class _FailingWriter:
  """Accepts ``ok_calls`` events, then raises on every call, ``close`` included."""

  def __init__(self, ok_calls: int):
    self.ok_calls, self.calls = ok_calls, 0

  def write_scalars(self, step, scalars):
    self.calls += 1
    if self.calls > self.ok_calls:
      raise ConnectionError("tracking server unreachable")

  def close(self):
    raise ConnectionError("tracking server unreachable")


class _HangingWriter:
  """Blocks in every call until released (a tracker whose connection stalls)."""

  def __init__(self):
    self.release = threading.Event()
    self.entered = threading.Event()

  def write_scalars(self, step, scalars):
    self.entered.set()
    self.release.wait()

  def close(self):
    self.release.wait()


def _events(workdir):
  return [
    {k: v for k, v in e.items() if k not in ("images_per_sec",)}
    for e in tracking.read_events(workdir)
  ]


def _same_training(workdir, final, reference):
  rs.assert_same_run(workdir, final, reference)
  want, got = _events(reference[0]), _events(workdir)
  assert [e["step"] for e in got] == [e["step"] for e in want]
  for a, b in zip(got, want, strict=True):
    assert {k: v for k, v in a.items() if k.startswith("eval/") or k == "train/loss"} == {
      k: v for k, v in b.items() if k.startswith("eval/") or k == "train/loss"
    }


@pytest.mark.slow
def test_a_tracker_failing_mid_run_costs_one_warning(reference, tmp_path, caplog):
  failing = _FailingWriter(ok_calls=2)
  with caplog.at_level(logging.WARNING):
    final = train.train_and_evaluate(rs.config(), str(tmp_path), writer=failing)
  _same_training(str(tmp_path), final, reference)
  assert failing.calls == len(tracking.read_events(str(tmp_path)))  # offered every event
  failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
  assert len([m for m in failures if "ConnectionError" in m]) == 1, failures


@pytest.mark.slow
def test_a_hanging_tracker_neither_blocks_steps_nor_the_end_beyond_the_timeout(
  reference, tmp_path, monkeypatch, caplog
):
  monkeypatch.setattr(writers, "CLOSE_TIMEOUT_S", 1.0)
  hanging = _HangingWriter()
  try:
    with caplog.at_level(logging.WARNING):
      final = train.train_and_evaluate(rs.config(), str(tmp_path), writer=hanging)
    assert hanging.entered.is_set() and not hanging.release.is_set()  # it never returned
  finally:
    hanging.release.set()
  _same_training(str(tmp_path), final, reference)
  assert any("did not finish within 1 s" in r.getMessage() for r in caplog.records)


def test_background_writer_close_is_bounded():
  hanging = _HangingWriter()
  writer = writers.BackgroundWriter(hanging, max_queue=2, close_timeout_s=0.5)
  try:
    start = time.perf_counter()
    for step in range(10):  # never blocks: the queue fills, then events are dropped
      writer.write_scalars(step, {"loss": 1.0})
    assert time.perf_counter() - start < 0.5
    assert writer.dropped >= 7
    start = time.perf_counter()
    writer.close()
    assert 0.4 < time.perf_counter() - start < 2.0
  finally:
    hanging.release.set()


@pytest.mark.slow
def test_wandb_unreachable_falls_back_and_training_is_unchanged(reference, tmp_path, monkeypatch):
  for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_RUN_ID"):
    monkeypatch.delenv(var, raising=False)
  for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
    os.makedirs(tmp_path / var, exist_ok=True)
    monkeypatch.setenv(var, str(tmp_path / var))
  monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
  monkeypatch.setenv("WANDB_SILENT", "true")
  monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
  workdir = str(tmp_path / "run")
  logger = wandb_logger.WandbLogger(
    project="hybridconv-test",
    mode="online",
    init_timeout=2.0,
    directory=workdir,
    settings={"x_disable_stats": True, "console": "off"},
  )
  final = train.train_and_evaluate(rs.config(), workdir, writer=logger)
  _same_training(workdir, final, reference)
  assert logger.mode in ("offline", "disabled")  # never online: the server is unreachable
