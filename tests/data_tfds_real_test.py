"""The TFDS path on real prepared files, without mocks.

``tests/data/tfds/fashion_mnist/3.0.1`` is a tiny Fashion-MNIST (48 train, 20
test examples) written by TFDS's own builder and ArrayRecord writer
(``tests/data/make_tiny_tfds.py``). Here nothing is patched: ``is_prepared``,
``dataset_info.json``, the ArrayRecord shards and PNG decoding all run as they
do on a user's prepared dataset.
"""

from __future__ import annotations

import os
import pathlib
import shutil

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh

from configs import tiny
from hybridconv import tracking
from hybridconv.data import build_pipeline, load_dataset
from hybridconv.data.idx import load_idx_dataset
from hybridconv.data.streaming import StreamingPipeline
from hybridconv.data.tfds_source import open_tfds_sources
from hybridconv.training import train

TFDS_DIR = pathlib.Path(__file__).resolve().parent / "data" / "tfds"
NUM_TRAIN, NUM_TEST = 48, 20
# The first labels of Fashion-MNIST's train and t10k files (independent of the IDX files).
FIRST_TRAIN_LABELS = [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
FIRST_TEST_LABELS = [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]


@pytest.fixture
def tfds_dir(tmp_path):
  """A private copy, so nothing a run might write lands in the repository."""
  target = tmp_path / "tfds"
  shutil.copytree(TFDS_DIR, target)
  return str(target)


def _data_config(data_dir, pipeline="device"):
  config = tiny.get_config().data
  config.source = "tfds"
  config.name = "fashion_mnist"
  config.data_dir = data_dir
  config.pipeline = pipeline
  return config


def test_real_prepared_files_load_with_their_recorded_sizes_and_labels(tfds_dir):
  dataset = load_dataset(_data_config(tfds_dir))
  assert dataset.train_images.shape == (NUM_TRAIN, 28, 28, 1)
  assert dataset.test_images.shape == (NUM_TEST, 28, 28, 1)
  assert dataset.train_images.dtype == np.uint8 and dataset.num_classes == 10
  # TFDS shuffles records by key hash when it writes them; the set of examples is kept.
  labels = np.bincount(dataset.train_labels, minlength=10)
  assert labels.sum() == NUM_TRAIN and (labels > 0).sum() >= 8
  assert dataset.train_images.std() > 50  # real clothes, not blank or random placeholders


def test_real_prepared_records_are_the_first_fashion_mnist_examples(tfds_dir):
  dataset = load_dataset(_data_config(tfds_dir))
  idx_dir = "/usr/share/datasets/fashion-mnist"
  if not os.path.exists(os.path.join(idx_dir, "train-labels-idx1-ubyte.gz")):
    pytest.skip(f"Fashion-MNIST IDX files not in {idx_dir} (make data installs them)")
  idx = load_idx_dataset("fashion_mnist", idx_dir)
  assert list(idx.train_labels[:10]) == FIRST_TRAIN_LABELS
  assert list(idx.test_labels[:10]) == FIRST_TEST_LABELS
  for split, count in (("train", NUM_TRAIN), ("test", NUM_TEST)):
    want_images = getattr(idx, f"{split}_images")[:count]
    want_labels = getattr(idx, f"{split}_labels")[:count]
    got_images = getattr(dataset, f"{split}_images")
    got_labels = getattr(dataset, f"{split}_labels")
    # Match records by content: PNG is lossless, so every image must be found exactly.
    keys = {img.tobytes(): int(lab) for img, lab in zip(want_images, want_labels, strict=True)}
    for image, label in zip(got_images, got_labels, strict=True):
      assert keys[image.tobytes()] == label
    assert len({img.tobytes() for img in got_images}) == count


def test_streaming_pipeline_over_real_tfds_sources(tfds_dir):
  train_source, eval_source, num_classes = open_tfds_sources("fashion_mnist", data_dir=tfds_dir)
  assert (len(train_source), len(eval_source), num_classes) == (NUM_TRAIN, NUM_TEST, 10)
  dataset = load_dataset(_data_config(tfds_dir))
  known = {
    img.tobytes(): int(lab)
    for img, lab in zip(dataset.train_images, dataset.train_labels, strict=True)
  }
  mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
  pipeline = StreamingPipeline(
    train_source,
    eval_source,
    num_classes=num_classes,
    global_batch_size=16,
    eval_batch_size=8,
    seed=0,
    mesh=mesh,
    num_threads=2,
    augment_config=ml_collections.ConfigDict(dict(crop_padding=0, horizontal_flip=False)),
  )
  assert pipeline.steps_per_epoch == 3 and pipeline.image_shape == (28, 28, 1)
  seen = []
  for step in range(3):  # one epoch: every example once
    batch = pipeline.train_batch(step)
    pixels = np.round((np.asarray(batch["image"]) * pipeline.std + pipeline.mean) * 255)
    for image, label in zip(pixels.astype(np.uint8), np.asarray(batch["label"]), strict=True):
      assert known[image.tobytes()] == label
      seen.append(image.tobytes())
  assert len(set(seen)) == NUM_TRAIN
  state = pipeline.get_state()
  expected = [pipeline.train_batch(step) for step in range(3, 5)]
  pipeline.set_state(state)
  for step, want in zip(range(3, 5), expected, strict=True):
    np.testing.assert_array_equal(pipeline.train_batch(step)["image"], want["image"])
  masks = [np.asarray(b["mask"]) for b in pipeline.eval_batches()]
  assert [int(m.sum()) for m in masks] == [8, 8, 4]


@pytest.mark.parametrize("pipeline", ["device", "streaming"])
@pytest.mark.slow
def test_train_and_evaluate_on_real_tfds_files(pipeline, tfds_dir, tmp_path):
  config = tiny.get_config("gabor")
  config.data = _data_config(tfds_dir, pipeline)
  config.train_for = "4 steps"
  config.batch_size = 16
  config.eval_batch_size = 8  # 20 test examples: the last batch has 4 padding rows
  config.lock()
  workdir = str(tmp_path / "work")
  final = train.train_and_evaluate(config, workdir)
  assert final["step"] == 4
  assert 0.0 <= final["eval/accuracy"] <= final["eval/top5_accuracy"] <= 1.0
  assert np.isfinite(final["eval/loss"]) and final["eval/loss"] > 0
  events = tracking.read_events(workdir)
  assert [e["step"] for e in events if "eval/accuracy" in e][-1] == 4
  data_dirs = list(pathlib.Path(workdir, "checkpoints").glob("*/data"))
  assert bool(data_dirs) == (pipeline == "streaming")  # the iterator state is checkpointed


def test_build_pipeline_reads_real_files_for_both_pipelines(tfds_dir):
  mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
  for name in ("device", "streaming"):
    pipeline = build_pipeline(
      _data_config(tfds_dir, name), global_batch_size=16, eval_batch_size=8, seed=0, mesh=mesh
    )
    assert pipeline.num_classes == 10 and pipeline.image_shape == (28, 28, 1)
    assert pipeline.steps_per_epoch == 3
    counts = [int(np.asarray(b["mask"]).sum()) for b in pipeline.eval_batches()]
    assert counts == [8, 8, 4], name
