"""Tests of the logger interface and its workdir, memory, multi, null and background backends."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from configs import default
from hybridconv import tracking
from hybridconv.tracking import jsonl_logger, writers
from hybridconv.tracking import logger as logger_lib


def _tracking_config(mode="disabled"):
  config = default.get_config().tracking
  config.wandb.mode = mode
  return config


def _log_everything(logger, step=3):
  logger.log_config({"model": {"name": "simple_cnn"}, "seed": 0})
  logger.log_scalars(step, {"train/loss": 0.5, "train/grad_norm": float("nan")})
  logger.log_images(
    step,
    {
      "filters/conv1": np.full((6, 8, 3), 200, np.uint8),
      "filters/conv2": np.full((4, 4, 1), 7, np.uint8),
    },
  )
  logger.log_histograms(
    step,
    {
      "gabor/conv1/theta": np.linspace(0, 3, 50),
      "filters/conv1/orientation_energy": tracking.Histogram(
        np.array([0.25, 0.75]), np.array([0.0, 90.0, 180.0])
      ),
    },
  )
  logger.log_table(step, "gabor/conv1", ["filter", "theta"], [[0, 0.1], [1, 0.2]])
  logger.log_artifact("file:///tmp/checkpoints/100", "checkpoint-100", "model")


def test_the_tracking_section_declares_the_documented_keys():
  config = default.get_config().tracking
  assert set(config.wandb.keys()) == {
    "mode",
    "project",
    "entity",
    "name",
    "group",
    "tags",
    "job_type",
    "init_timeout",
  }
  assert set(config.keys()) == {
    "wandb",
    "scalars_every",
    "filters_every",
    "gabor_fit",
    "animation",
    "log_checkpoints",
  }
  assert config.wandb.mode in ("online", "offline", "disabled")


def test_memory_logger_records_every_kind_with_its_step():
  logger = tracking.MemoryLogger()
  _log_everything(logger, step=3)
  assert [e.kind for e in logger.events] == [
    "config",
    "scalars",
    "images",
    "histograms",
    "table",
    "artifact",
  ]
  assert logger.keys("scalars", step=3) == {"train/loss", "train/grad_norm"}
  assert logger.keys("images") == {"filters/conv1", "filters/conv2"}
  assert logger.keys("table") == {"gabor/conv1"}
  assert logger.steps("scalars", "train/loss") == [3]
  hist = logger.events[3].data["gabor/conv1/theta"]
  assert hist.counts.sum() == 50
  logger.close()
  assert logger.closed


def test_memory_logger_keeps_copies_not_views():
  logger = tracking.MemoryLogger()
  image = np.zeros((2, 2, 1), np.uint8)
  logger.log_images(0, {"x": image})
  image[...] = 255
  assert logger.events[0].data["x"].max() == 0


@pytest.mark.parametrize(
  "image, message",
  [
    (np.zeros((4, 4, 3), np.float32), "must be uint8"),
    (np.zeros((4, 4), np.uint8), "shape"),
    (np.zeros((4, 4, 2), np.uint8), "shape"),
  ],
)
def test_bad_images_are_refused_with_a_clear_error(image, message):
  with pytest.raises(ValueError, match=message):
    tracking.MemoryLogger().log_images(0, {"bad": image})


def test_table_rows_must_match_columns():
  with pytest.raises(ValueError, match="row 1 has 1 values"):
    tracking.MemoryLogger().log_table(0, "t", ["a", "b"], [[1, 2], [3]])


def test_multi_logger_fans_out_to_every_backend():
  a, b = tracking.MemoryLogger(), tracking.MemoryLogger()
  multi = tracking.MultiLogger([a, b])
  _log_everything(multi)
  multi.write_scalars(4, {"eval/accuracy": 0.9})  # the train loop's MetricWriter call
  multi.close()
  for backend in (a, b):
    assert backend.closed
    assert backend.keys("scalars", step=4) == {"eval/accuracy"}
    assert len(backend.events) == 7


def test_background_writer_forwards_every_kind_as_host_copies():
  memory = tracking.MemoryLogger()
  background = writers.BackgroundWriter(memory)
  _log_everything(background)
  values, image = np.array([1.0, 2.0]), np.zeros((2, 2, 1), np.uint8)
  background.log_histograms(4, {"h": values})
  background.log_images(4, {"x": image})
  values[:], image[...] = np.nan, 255  # the caller reuses its buffers (donation)
  background.log_video(4, "filters_gif/conv1", "conv1.gif")
  background.close()
  assert memory.closed
  assert [e.kind for e in memory.events] == [
    "config",
    "scalars",
    "images",
    "histograms",
    "table",
    "artifact",
    "histograms",
    "images",
    "video",
  ]
  assert memory.events[6].data["h"].counts.sum() == 2  # binned before the change
  assert memory.events[7].data["x"].max() == 0
  assert memory.events[8].data == {"filters_gif/conv1": os.path.abspath("conv1.gif")}
  assert background.dropped == 0 and background.errors == 0


class _ScalarWriter:
  """A plain metric writer: ``write_scalars`` and ``close`` only."""

  def __init__(self):
    self.steps, self.closed = [], False

  def write_scalars(self, step, scalars):
    self.steps.append(step)

  def close(self):
    self.closed = True


def test_background_writer_gives_a_plain_writer_the_scalars_only():
  plain = _ScalarWriter()
  background = writers.BackgroundWriter(plain)
  _log_everything(background, step=3)
  background.close()
  assert plain.steps == [3] and plain.closed
  assert background.errors == 0


def test_jsonl_logger_writes_the_documented_layout(tmp_path):
  with jsonl_logger.JsonlLogger(str(tmp_path)) as logger:
    _log_everything(logger, step=3)
    logger.log_scalars(7, {"train/loss": 0.25})
  metrics = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert metrics[0] == {"step": 3, "train/loss": 0.5, "train/grad_norm": "nan"}
  assert metrics[1] == {"step": 7, "train/loss": 0.25}
  colour = np.asarray(Image.open(tmp_path / "filters/conv1/step_0000003.png"))
  assert colour.shape == (6, 8, 3) and colour.dtype == np.uint8 and colour.min() == 200
  grey = np.asarray(Image.open(tmp_path / "filters/conv2/step_0000003.png"))
  assert grey.shape == (4, 4) and grey.max() == 7
  hists = {e["name"]: e for e in jsonl_logger.read_histograms(str(tmp_path))}
  theta = hists["gabor/conv1/theta"]
  assert theta["count"] == 50 and sum(theta["bin_counts"]) == 50
  assert theta["min"] == 0 and theta["max"] == 3 and math.isclose(theta["mean"], 1.5)
  energy = hists["filters/conv1/orientation_energy"]
  assert energy["bin_counts"] == [0.25, 0.75] and energy["bin_edges"] == [0, 90, 180]
  assert math.isclose(energy["mean"], 45 * 0.25 + 135 * 0.75)
  table = jsonl_logger.read_tables(str(tmp_path), "gabor/conv1")
  assert table == [
    {"step": 3, "name": "gabor/conv1", "columns": ["filter", "theta"], "rows": [[0, 0.1], [1, 0.2]]}
  ]
  artifacts = jsonl_logger.read_jsonl(str(tmp_path / "artifacts.jsonl"))
  assert artifacts == [
    {"name": "checkpoint-100", "type": "model", "path": "file:///tmp/checkpoints/100"}
  ]
  assert json.load(open(tmp_path / "config.json")) == {"model": {"name": "simple_cnn"}, "seed": 0}


def test_read_metrics_keeps_the_later_value_of_a_repeated_step(tmp_path):
  with jsonl_logger.JsonlLogger(str(tmp_path)) as logger:
    logger.log_scalars(10, {"train/loss": 1.0})
    logger.log_scalars(20, {"train/loss": 0.8, "eval/accuracy": 0.5})
    logger.log_scalars(20, {"train/loss": 0.7})  # a resumed run re-doing step 20
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 30, "train/lo')  # a run killed mid-line
  metrics = jsonl_logger.read_metrics(str(tmp_path))
  np.testing.assert_array_equal(metrics["train/loss"][0], [10, 20])
  np.testing.assert_allclose(metrics["train/loss"][1], [1.0, 0.7])
  np.testing.assert_array_equal(metrics["eval/accuracy"][0], [20])


def test_make_logger_gives_other_processes_a_null_logger(tmp_path):
  logger = tracking.make_logger(_tracking_config("offline"), str(tmp_path), is_main_process=False)
  assert isinstance(logger, tracking.NullLogger)
  _log_everything(logger)
  logger.close()
  assert os.listdir(tmp_path) == []


def test_make_logger_disabled_wandb_writes_only_the_workdir(tmp_path):
  logger = tracking.make_logger(
    _tracking_config("disabled"), str(tmp_path), is_main_process=True, config={"seed": 1}
  )
  assert [type(x).__name__ for x in logger.loggers] == ["JsonlLogger"]
  logger.log_scalars(0, {"train/loss": 2.0})
  logger.close()
  assert json.load(open(tmp_path / "config.json")) == {"seed": 1}
  assert tracking.read_metrics(str(tmp_path))["train/loss"][1].tolist() == [2.0]


@pytest.mark.parametrize(
  "key, value, message",
  [
    ("wandb.mode", "cloud", "tracking.wandb.mode='cloud'"),
  ],
)
def test_make_logger_refuses_bad_settings(tmp_path, key, value, message):
  config = _tracking_config()
  section, _, name = key.rpartition(".")
  (config[section] if section else config)[name] = value
  with pytest.raises(ValueError, match=message):
    tracking.make_logger(config, str(tmp_path), is_main_process=True)


def test_is_due_fires_at_zero_every_n_and_at_the_end():
  assert [s for s in range(12) if tracking.is_due(s, 5, total_steps=11)] == [0, 5, 10, 11]
  assert not any(tracking.is_due(s, 0, total_steps=11) for s in range(12))


def test_histogram_of_non_finite_values_is_empty_not_an_error():
  hist = logger_lib.histogram(np.array([np.nan, np.inf]))
  assert hist.counts.sum() == 0
  summary = logger_lib.histogram_summary(np.array([np.nan, 1.0, 3.0]))
  assert summary["count"] == 3 and summary["mean"] == 2.0
