"""A short end-to-end run on a TFDS dataset under ``tfds.testing.mock_data`` (no download)."""

from __future__ import annotations

from unittest import mock

import pytest

from configs import tiny
from hybridconv import tracking
from hybridconv.training import train

tfds = pytest.importorskip("tensorflow_datasets")


@pytest.mark.parametrize("pipeline", ["device", "streaming"])
@pytest.mark.slow
def test_mnist_end_to_end_under_mock_data(pipeline, tmp_path):
  config = tiny.get_config("gabor")
  config.data.source = "tfds"
  config.data.name = "mnist"
  config.data.pipeline = pipeline
  config.data.data_dir = str(tmp_path / "tfds")
  config.train_for = "4 steps"
  config.batch_size = 16
  config.eval_batch_size = 32
  config.lock()
  # mock_data serves random records but leaves the builder pointing at an empty
  # directory; is_prepared is patched so the source takes the prepared path.
  prepared = mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True)
  mocked = tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE)
  with mocked, prepared:
    final = train.train_and_evaluate(config, str(tmp_path / "work"))
  assert final["step"] == 4
  # 10 classes: top-5 is reported; mock labels are random, so only ranges are checked.
  assert 0.0 <= final["eval/accuracy"] <= final["eval/top5_accuracy"] <= 1.0
  events = tracking.read_events(str(tmp_path / "work"))
  assert any("eval/loss" in e for e in events) and any("train/loss" in e for e in events)
