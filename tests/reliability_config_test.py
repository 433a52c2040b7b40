"""Bad configs, config changes on resume and bad data files: one clear message, nothing compiled.

Complements ``train_errors_test.py`` (bad values of single keys) with the
mistakes that need the model, the data or the workdir to detect.
"""

from __future__ import annotations

import gzip
import os
import shutil

import numpy as np
import pytest

from hybridconv import data
from hybridconv.training import train
from tests import reliability_support as rs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  return rs.reference(tmp_path_factory)


@pytest.fixture
def no_compile(monkeypatch):
  """Tracing the train step would mean the error came too late."""

  def fail(*args, **kwargs):
    raise AssertionError("the train step was traced before the error")

  monkeypatch.setattr(train, "train_step", fail)


@pytest.mark.parametrize(
  ("overrides", "message"),
  [
    (
      {"model.kernels": {"conv2": "fixed:nosuch"}},
      r"^model.kernels\['conv2'\]='fixed:nosuch': unknown kernel bank 'nosuch'; known banks: "
      r"gabor, .*sobel_x",
    ),
    (
      {"model.first_layer": "gabbor"},
      r"^model.first_layer='gabbor': unknown kernel source 'gabbor'; allowed: \('free', ",
    ),
    (
      {"model.kernels": {"conv1": {"source": "hybrid", "groups": [["gabor", 3], ["free", 3]]}}},
      r"^Hybrid group counts \[3, 3\] add up to 6, but the layer has 8 output channels "
      r"\(building model.name='simple_cnn' for 16x16x1 images\)",
    ),
    (
      {"model.kernels": {"conv1": {"source": "hybrid", "groups": [["gabor", 0.3], ["free", 0.3]]}}},
      r"^model.kernels\['conv1'\]=.*: Hybrid group fractions must add up to 1, got "
      r"\[0.3, 0.3\]",
    ),
    (
      {"data.gratings.image_size": 4},
      r"^conv layer 'conv1' \(model.first_layer / model.kernels\) has a 5x5 kernel, larger "
      r"than the 4x4 input images; allowed: kernels no larger than the images",
    ),
    ({"model.name": "alexnet"}, r"AlexNet needs images of at least 63x63 pixels"),
    (
      {"data.source": "tfds", "data.name": "no_such_dataset"},
      r"^data.name 'no_such_dataset' is not a TFDS dataset; allowed: ",
    ),
    (
      {"data.source": "idx", "data.name": "cifar10"},
      r"^data.name 'cifar10' is not an IDX dataset; allowed with data.source='idx': "
      r"\['fashion_mnist', 'mnist'\]",
    ),
    ({"nan_policy": "ignore"}, r"^config.nan_policy='ignore' is not one of \('stop', 'skip'\)"),
    ({"max_consecutive_skips": 0}, r"^config.max_consecutive_skips=0 must be >= 1"),
  ],
  ids=[
    "bank",
    "source",
    "group-counts",
    "group-fractions",
    "kernel-larger-than-image",
    "alexnet-small-image",
    "tfds-dataset",
    "idx-dataset",
    "nan-policy",
    "max-skips",
  ],
)
def test_bad_model_or_dataset_fails_before_compiling(overrides, message, no_compile, tmp_path):
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(rs.config(**overrides), str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")


@pytest.mark.parametrize(
  ("overrides", "message"),
  [
    ({"model.first_layer": "free"}, r"config.model.first_layer='free' differs from 'hybrid'"),
    ({"seed": 1}, r"config.seed=1 differs from 0"),
    ({"data.gratings.image_size": 20}, r"config.data.gratings.image_size=20 differs from 16"),
    ({"optim.name": "sgd"}, r"config.optim.name='sgd' differs from 'adamw'"),
  ],
  ids=["model", "seed", "data", "optimizer"],
)
@pytest.mark.slow
def test_resuming_with_a_config_that_changes_the_model_is_refused(
  overrides, message, reference, no_compile, tmp_path
):
  workdir = str(tmp_path / "run")
  shutil.copytree(reference[0], workdir)
  with pytest.raises(
    ValueError,
    match=message + r" in .*config.json, whose checkpoints this run "
    r"would resume; .* Use a new --workdir, or pass "
    r"--config.allow_config_change=True to resume anyway",
  ):
    train.train_and_evaluate(rs.config(**overrides), workdir)


@pytest.mark.slow
def test_allowed_config_change_resumes_and_refusal_is_one_line_from_the_cli(reference, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(reference[0], workdir)
  # Cadences and run length may change: the finished run is resumed (only evaluated).
  again = train.train_and_evaluate(rs.config(log_every="4 steps"), workdir)
  assert again["eval/accuracy"] == reference[1]["eval/accuracy"]
  refused = rs.run_cli(workdir, "--config.model.width=0.5")
  assert refused.returncode == 2
  errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and errors[0].startswith(
    "error: config.model.width=0.5 differs from 0.25 in "
  )
  assert "Traceback" not in refused.stderr


def _write_idx(path, array: np.ndarray, magic: int, compress: bool) -> None:
  header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
  raw = header + array.astype(np.uint8).tobytes()
  if compress:
    with gzip.open(str(path) + ".gz", "wb") as f:
      f.write(raw)
  else:
    with open(path, "wb") as f:
      f.write(raw)


def _idx_dir(tmp_path, compress=False):
  rng = np.random.default_rng(0)
  directory = tmp_path / "idx"
  directory.mkdir()
  for prefix, count in (("train", 64), ("t10k", 32)):
    _write_idx(
      directory / f"{prefix}-images-idx3-ubyte",
      rng.integers(0, 256, (count, 28, 28)),
      0x803,
      compress,
    )
    _write_idx(
      directory / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, count), 0x801, compress
    )
  return directory


def _idx_config(directory):
  return rs.config(
    **{
      "data.source": "idx",
      "data.name": "fashion_mnist",
      "data.data_dir": str(directory),
      "batch_size": 16,
      "eval_batch_size": 32,
    }
  )


def test_truncated_idx_file_is_refused_end_to_end(no_compile, tmp_path):
  directory = _idx_dir(tmp_path)
  config = _idx_config(directory)
  assert data.load_dataset(config.data).train_images.shape == (64, 28, 28, 1)  # intact: loads
  path = directory / "train-images-idx3-ubyte"
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) - 100)
  with pytest.raises(
    ValueError,
    match=(
      r"train-images-idx3-ubyte: truncated file: header says dimensions \(64, 28, 28\), so "
      r"50192 bytes are expected, found 50092"
    ),
  ):
    train.train_and_evaluate(config, str(tmp_path / "work"))


@pytest.mark.slow
def test_corrupt_gzip_is_refused_in_one_line_from_the_cli(tmp_path):
  directory = _idx_dir(tmp_path, compress=True)
  path = directory / "t10k-labels-idx1-ubyte.gz"
  raw = bytearray(path.read_bytes())
  raw[len(raw) // 2] ^= 0xFF  # a damaged download: the deflate stream or its CRC breaks
  path.write_bytes(bytes(raw))
  result = rs.run_cli(
    tmp_path / "work",
    "--config.data.source=idx",
    "--config.data.name=fashion_mnist",
    f"--config.data.data_dir={directory}",
    "--config.batch_size=16",
    "--config.eval_batch_size=32",
  )
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, result.stderr[-2000:]
  assert "t10k-labels-idx1-ubyte.gz: not a valid gzip file" in errors[0]
  assert "Traceback" not in result.stderr
