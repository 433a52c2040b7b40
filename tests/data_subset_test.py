"""Class-balanced training subsets (hybridconv.data.subset) and their use by the pipelines."""

from __future__ import annotations

import hashlib

import jax
import ml_collections
import numpy as np
import pytest

from hybridconv import data, sharding
from hybridconv.data import subset


def _labels(counts):
  return np.concatenate([np.full(n, c, np.int32) for c, n in enumerate(counts)])


def test_balanced_subset_has_equal_class_counts_and_spreads_the_remainder_by_seed():
  labels = np.random.default_rng(0).permutation(_labels([200] * 10))
  for seed in range(6):
    indices = subset.balanced_indices(labels, num_classes=10, size=1003, seed=seed)
    counts = np.bincount(labels[indices], minlength=10)
    assert len(indices) == len(np.unique(indices)) == 1003
    assert sorted(counts.tolist()) == [100] * 7 + [101] * 3
    assert np.all(np.diff(indices) > 0)
  extras = {
    tuple(
      np.bincount(
        labels[subset.balanced_indices(labels, num_classes=10, size=1003, seed=s)], minlength=10
      )
      == 101
    )
    for s in range(6)
  }
  assert len(extras) > 1  # the remainder goes to different classes for different seeds


def test_subset_is_deterministic_and_differs_between_seeds():
  labels = _labels([50] * 4)
  first = subset.balanced_indices(labels, num_classes=4, size=20, seed=3)
  np.testing.assert_array_equal(
    first, subset.balanced_indices(labels, num_classes=4, size=20, seed=3)
  )
  other = subset.balanced_indices(labels, num_classes=4, size=20, seed=4)
  assert not np.array_equal(first, other)
  assert np.bincount(labels[first]).tolist() == [5, 5, 5, 5]


def test_subset_pins_its_hash_so_a_changed_algorithm_is_noticed():
  # Golden value: changing the draw (hash constants, stream numbers, sort) changes
  # every study's training images, which must be a deliberate, versioned change.
  labels = _labels([7, 9, 11])
  indices = subset.balanced_indices(labels, num_classes=3, size=10, seed=1)
  record = subset.subset_record(indices, labels, num_classes=3, train_size=10, subset_seed=1)
  assert record["class_counts"] == np.bincount(labels[indices], minlength=3).tolist()
  assert sorted(record["class_counts"]) == [3, 3, 4]
  digest = hashlib.sha256(np.asarray(indices, "<i8").tobytes()).hexdigest()
  assert record["indices_sha256"] == digest
  assert indices.tolist() == GOLDEN_INDICES


GOLDEN_INDICES = [2, 4, 5, 6, 8, 11, 13, 21, 25, 26]


def test_a_short_class_gives_all_it_has_and_the_others_fill_the_size():
  labels = _labels([2, 50, 50])
  indices = subset.balanced_indices(labels, num_classes=3, size=30, seed=0)
  counts = np.bincount(labels[indices], minlength=3)
  assert counts[0] == 2 and counts.sum() == 30 and abs(int(counts[1]) - int(counts[2])) <= 1


@pytest.mark.parametrize(
  "size, message",
  [(5, "outside [10, 200]"), (201, "outside [10, 200]"), (-1, "must be an int >= 0")],
)
def test_bad_train_sizes_are_refused_with_the_allowed_range(size, message):
  with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
    subset.check_train_size(size, split_size=200, num_classes=10, global_batch_size=8)


def test_train_size_below_the_global_batch_is_refused():
  with pytest.raises(ValueError, match=r"data.train_size=20 is outside \[32, 200\].*batch_size=32"):
    subset.check_train_size(20, split_size=200, num_classes=10, global_batch_size=32)


def _gratings_config(pipeline: str, train_size: int, subset_seed: int = -1):
  config = ml_collections.ConfigDict(
    {
      "source": "gratings",
      "name": "gratings",
      "data_dir": "",
      "pipeline": pipeline,
      "prepare": False,
      "train_size": train_size,
      "subset_seed": subset_seed,
      "validation_size": 0,
      "validation_seed": 0,
      "augment": {"crop_padding": 0, "horizontal_flip": False},
      "gratings": {
        "num_train": 240,
        "num_test": 40,
        "image_size": 8,
        "task": "orientation",
        "num_classes": 4,
        "noise": 0.1,
        "envelope_sigma": 0.0,
        "seed": 0,
      },
    }
  )
  return config


@pytest.mark.parametrize("pipeline", ["device", "streaming"])
def test_both_pipelines_train_on_the_subset_and_evaluate_on_the_whole_test_split(pipeline):
  mesh = sharding.make_mesh()
  built = data.build_pipeline(
    _gratings_config(pipeline, 40), global_batch_size=8, eval_batch_size=8, seed=2, mesh=mesh
  )
  assert built.num_train_examples == 40
  assert built.num_eval_examples == 40
  assert built.train_subset["num_examples"] == 40
  assert built.train_subset["class_counts"] == [10, 10, 10, 10]
  assert built.train_subset["subset_seed"] == 2  # follows the run's seed
  labels = np.concatenate(
    [
      np.asarray(jax.device_get(built.train_batch(s)["label"]))
      for s in range(built.steps_per_epoch)
    ]
  )
  assert np.bincount(labels, minlength=4).tolist() == [10, 10, 10, 10]


def test_the_subset_follows_the_run_seed_unless_subset_seed_pins_it():
  mesh = sharding.make_mesh()

  def record(seed, subset_seed=-1):
    return data.build_pipeline(
      _gratings_config("device", 40, subset_seed),
      global_batch_size=8,
      eval_batch_size=8,
      seed=seed,
      mesh=mesh,
    ).train_subset

  assert record(0)["indices_sha256"] != record(1)["indices_sha256"]
  assert record(0, 5)["indices_sha256"] == record(1, 5)["indices_sha256"]


def test_device_and_streaming_pipelines_choose_the_same_images():
  mesh = sharding.make_mesh()
  records = [
    data.build_pipeline(
      _gratings_config(p, 40), global_batch_size=8, eval_batch_size=8, seed=1, mesh=mesh
    ).train_subset
    for p in ("device", "streaming")
  ]
  assert records[0]["indices_sha256"] == records[1]["indices_sha256"]
