"""The validation hold-out: fixed, balanced, disjoint from every training subset; evaluated along
training while the test split is evaluated once, at the end."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hybridconv.data import subset
from hybridconv.training import train
from tests.conftest import make_tiny_config

LABELS = np.repeat(np.arange(4), 64)  # 256 images, 4 classes


def test_hold_out_is_balanced_fixed_and_disjoint_from_every_training_subset():
  validation, remaining = subset.hold_out(LABELS, num_classes=4, size=40, seed=0)
  assert np.bincount(LABELS[validation]).tolist() == [10, 10, 10, 10]
  assert len(validation) + len(remaining) == len(LABELS)
  again, _ = subset.hold_out(LABELS, num_classes=4, size=40, seed=0)
  np.testing.assert_array_equal(validation, again)
  other, _ = subset.hold_out(LABELS, num_classes=4, size=40, seed=1)
  assert not np.array_equal(validation, other)
  for run_seed in range(5):
    chosen = subset.balanced_indices(LABELS[remaining], num_classes=4, size=100, seed=run_seed)
    assert not set(remaining[chosen]) & set(validation)


@pytest.mark.parametrize("size", [3, 256])
def test_hold_out_refuses_a_size_the_split_cannot_give(size):
  with pytest.raises(ValueError, match=f"data.validation_size={size} is outside"):
    subset.hold_out(LABELS, num_classes=4, size=size, seed=0)


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def test_a_run_evaluates_validation_along_training_and_the_test_split_once(tmp_path):
  config = make_tiny_config(
    "free",
    **{"data.validation_size": 56, "eval_every": "0.25 epochs", "checkpoint.keep_best": 1},
  )
  final = train.train_and_evaluate(config, str(tmp_path))
  rows = _metrics(str(tmp_path))
  val_steps = [row["step"] for row in rows if "val/accuracy" in row]
  test_steps = [row["step"] for row in rows if "eval/accuracy" in row]
  assert len(val_steps) >= 4 and val_steps[-1] == 8
  assert test_steps == [8]
  assert {"val/accuracy", "val/loss", "eval/accuracy", "eval/loss"} <= set(final)
  with open(tmp_path / "train_subset.json", encoding="utf-8") as f:
    record = json.load(f)
  assert record["validation_size"] == 56 and record["num_examples"] == 256 - 56
  assert len(record["validation_sha256"]) == 64


@pytest.mark.parametrize(
  ("overrides", "message"),
  [
    ({"data.validation_size": -1}, "data.validation_size=-1 must be an int >= 0"),
    ({"data.validation_seed": -2}, "data.validation_seed=-2 must be an int >= 0"),
    (
      {"data.validation_size": 50, "data.pipeline": "streaming"},
      "data.validation_size=50 needs data.pipeline='device'",
    ),
  ],
)
def test_bad_hold_out_settings_are_refused_before_anything_runs(tmp_path, overrides, message):
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(make_tiny_config("free", **overrides), str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "metrics.jsonl")
