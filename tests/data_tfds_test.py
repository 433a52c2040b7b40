"""TFDS source under tfds.testing.mock_data, and its error messages on real (empty) dirs."""

from __future__ import annotations

import importlib.util
from unittest import mock

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from jax.sharding import Mesh

from hybridconv.data import load_dataset, tfds_source
from hybridconv.data.streaming import StreamingPipeline

HAS_TF = importlib.util.find_spec("tensorflow") is not None


def _mock_tfds(num_examples: int):
  """mock_data serves random records from the builder's features, but leaves the builder
  pointing at a missing directory; patching is_prepared makes it look prepared, which is
  the situation mock_data simulates."""
  stack = mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True)
  return tfds.testing.mock_data(
    num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE
  ), stack


def _config(name: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    dict(
      source="tfds",
      name=name,
      data_dir="/tmp/hybridconv-no-such-tfds-dir",
      pipeline="device",
      prepare=False,
      augment=dict(crop_padding=0, horizontal_flip=False),
    )
  )


@pytest.mark.parametrize("name, shape", [("fashion_mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_load_dataset_reads_whole_splits(name, shape):
  mocked, prepared = _mock_tfds(12)
  with mocked, prepared:
    ds = load_dataset(_config(name))
  assert ds.train_images.shape == (12, *shape) and ds.train_images.dtype == np.uint8
  assert ds.test_images.shape == (12, *shape)
  assert ds.train_labels.dtype == np.int32 and ds.num_classes == 10
  assert ds.train_labels.min() >= 0 and ds.train_labels.max() < 10
  assert ds.train_images.std() > 0  # random pixels, not an all-zero placeholder


def test_streaming_over_mocked_sources_resumes_exactly():
  mocked, prepared = _mock_tfds(40)
  with mocked, prepared:
    train, evaluation, num_classes = tfds_source.open_tfds_sources("cifar10")
  mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
  pipeline = StreamingPipeline(
    train,
    evaluation,
    num_classes=num_classes,
    global_batch_size=8,
    eval_batch_size=16,
    seed=0,
    mesh=mesh,
    num_threads=2,
    augment_config=ml_collections.ConfigDict(dict(crop_padding=4, horizontal_flip=True)),
  )
  assert pipeline.image_shape == (32, 32, 3) and pipeline.steps_per_epoch == 5
  for step in range(3):
    batch = pipeline.train_batch(step)
  assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.float32
  state = pipeline.get_state()
  expected = [pipeline.train_batch(step) for step in range(3, 9)]  # crosses an epoch boundary
  pipeline.set_state(state)
  for step, want in zip(range(3, 9), expected, strict=True):
    got = pipeline.train_batch(step)
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["label"], want["label"])
  masks = [np.asarray(b["mask"]) for b in pipeline.eval_batches()]
  assert [m.sum() for m in masks] == [16, 16, 8]


def test_not_prepared_says_name_dir_and_how(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    tfds_source.load_tfds_dataset("mnist", data_dir=str(tmp_path))
  message = str(info.value)
  for needed in ("'mnist'", str(tmp_path), "--config.data.prepare=True", "tfds-prepare"):
    assert needed in message


@pytest.mark.skipif(HAS_TF, reason="TensorFlow is installed, so preparing would download")
def test_prepare_without_tensorflow_says_what_to_install(tmp_path):
  with pytest.raises(ImportError, match=r"pip install 'hybridconv\[tfds-prepare\]'"):
    tfds_source.load_tfds_dataset("mnist", data_dir=str(tmp_path), prepare=True)


def test_data_dir_defaults(monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", "/from/env")
  assert tfds_source.tfds_data_dir("") == "/from/env"
  assert tfds_source.tfds_data_dir("/explicit") == "/explicit"
  monkeypatch.delenv("TFDS_DATA_DIR")
  assert tfds_source.tfds_data_dir("").endswith("tensorflow_datasets")


def test_unknown_dataset_name():
  with pytest.raises(ValueError, match="'no_such_dataset' is not a TFDS dataset.*list_builders"):
    tfds_source.load_tfds_dataset("no_such_dataset", data_dir="/tmp")


def test_non_image_dataset_is_refused():
  mocked, prepared = _mock_tfds(4)
  with mocked, prepared, pytest.raises(ValueError, match="'image' and 'label' features"):
    tfds_source.load_tfds_dataset("imdb_reviews")
