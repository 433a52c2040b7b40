"""A short training run with tracking on: W&B offline, filter images, histograms, scalars."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
from PIL import Image

from configs import tiny
from hybridconv import tracking
from hybridconv.reports import run_report
from hybridconv.tracking import jsonl_logger
from hybridconv.training import train


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
  for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_RUN_ID"):
    monkeypatch.delenv(var, raising=False)
  for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
    os.makedirs(tmp_path / var.lower(), exist_ok=True)
    monkeypatch.setenv(var, str(tmp_path / var.lower()))
  monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
  monkeypatch.setenv("WANDB_SILENT", "true")
  monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there


def _config(mode, filters_every=4):
  config = tiny.get_config("hybrid")  # 8 steps, log every 2, 16x16 gratings
  config.tracking.wandb.mode = mode
  config.tracking.wandb.init_timeout = 2.0
  config.tracking.filters_every = f"{filters_every} steps" if filters_every else "never"
  config.tracking.scalars_every = "4 steps"
  config.tracking.log_checkpoints = True
  config.lock()
  return config


@pytest.mark.slow
def test_offline_run_writes_filter_images_histograms_and_scalars(tmp_path, offline_wandb):
  workdir = str(tmp_path / "run")
  final = train.train_and_evaluate(_config("offline"), workdir)
  assert final["step"] == 8
  for layer in ("conv1", "conv2"):
    frames = sorted(glob.glob(os.path.join(workdir, "filters", layer, "step_*.png")))
    assert [os.path.basename(f) for f in frames] == [
      "step_0000000.png",
      "step_0000004.png",
      "step_0000008.png",
    ]
    image = np.asarray(Image.open(frames[-1]))
    assert image.dtype == np.uint8 and image.min() == 0 and image.max() == 255
    assert len(np.unique(image)) > 20  # a real pixel range, not all black
    assert os.path.exists(os.path.join(workdir, "filters", layer + ".gif"))
  metrics = tracking.read_metrics(workdir)
  assert metrics["train/loss"][0].tolist() == [2, 4, 6, 8]
  assert metrics["grad_norm/conv1"][0].tolist() == [4, 8]
  assert metrics["gabor_fit/conv1/r2_median"][0].tolist() == [0, 4, 8]
  assert 0 < metrics["gabor/conv1/drift/theta"][1][-1]
  hists = {e["name"] for e in jsonl_logger.read_histograms(workdir)}
  assert {"gabor/conv1/theta", "gabor/conv1/frequency", "gabor_fit/conv2/r2"} <= hists
  assert glob.glob(os.path.join(workdir, "wandb", "offline-run-*", "run-*.wandb"))
  # The GIFs also went to W&B (filters_gif/<layer>), and change grids were drawn.
  videos = glob.glob(
    os.path.join(workdir, "wandb", "offline-run-*", "files", "media", "videos", "**", "*.gif"),
    recursive=True,
  )
  assert len(videos) == 2
  changes = sorted(glob.glob(os.path.join(workdir, "filters_change", "conv1", "step_*.png")))
  assert [os.path.basename(f) for f in changes] == ["step_0000004.png", "step_0000008.png"]
  artifacts = jsonl_logger.read_jsonl(os.path.join(workdir, "artifacts.jsonl"))
  assert artifacts and artifacts[-1]["path"].endswith("/checkpoints/8")
  assert os.path.exists(run_report.write_report(workdir))


@pytest.mark.slow
def test_online_without_network_finishes_normally(tmp_path, offline_wandb):
  workdir = str(tmp_path / "run")
  final = train.train_and_evaluate(_config("online", filters_every=0), workdir)
  assert final["step"] == 8 and "eval/accuracy" in final
  assert glob.glob(os.path.join(workdir, "wandb", "offline-run-*"))
