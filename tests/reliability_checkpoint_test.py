"""Damaged checkpoints are named, skipped for the newest intact one, and moved aside.

A copy of a finished run's workdir (checkpoints 4 and 8) has checkpoint 8
damaged in one of the ways disks and interrupted copies damage files; the
resumed run must name it, restart from 4 and end bit-identical to the
uninterrupted run. The checksums that catch silent damage are tested against
an independent numpy computation.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybridconv.training import checkpointing, train
from tests import reliability_support as rs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  return rs.reference(tmp_path_factory)


def _copy_run(reference_run, tmp_path) -> str:
  workdir = str(tmp_path / "run")
  shutil.copytree(reference_run[0], workdir)
  return workdir


def _largest_array_file(workdir, step):
  files = glob.glob(
    os.path.join(workdir, "checkpoints", str(step), "state", "**", "d", "*"), recursive=True
  )
  return max(files, key=os.path.getsize)


def _truncate(workdir, step):
  path = _largest_array_file(workdir, step)
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _flip_one_byte(workdir, step):
  path = _largest_array_file(workdir, step)
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0x01]))


def _delete_array_metadata(workdir, step):
  os.remove(os.path.join(workdir, "checkpoints", str(step), "state", "_METADATA"))


def _garble_metadata(workdir, step):
  with open(
    os.path.join(workdir, "checkpoints", str(step), "metadata", "metadata"), "w", encoding="utf-8"
  ) as f:
    f.write('{"step": 8, "fingerpr')


@pytest.mark.parametrize(
  "damage",
  [_truncate, _flip_one_byte, _delete_array_metadata, _garble_metadata],
  ids=lambda f: f.__name__.strip("_"),
)
@pytest.mark.slow
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(
  damage, reference, tmp_path, caplog
):
  workdir = _copy_run(reference, tmp_path)
  damage(workdir, 8)
  with caplog.at_level(logging.WARNING):
    final = train.train_and_evaluate(rs.config(), workdir)
  damaged = os.path.join(workdir, "checkpoints", "8")
  assert any(f"checkpoint {damaged} cannot be restored" in r.getMessage() for r in caplog.records)
  # The damaged checkpoint was kept for inspection, outside the checkpoint directory ...
  assert os.path.isdir(os.path.join(workdir, "checkpoints" + checkpointing.CORRUPT_SUFFIX, "8"))
  # ... and the run redid steps 5-8 from checkpoint 4, writing a sound checkpoint 8.
  rs.assert_same_run(workdir, final, reference)
  assert final["train_seconds"] > 0  # it trained, rather than only evaluating


@pytest.mark.slow
def test_no_intact_checkpoint_stops_with_every_error_and_moves_nothing(reference, tmp_path):
  workdir = _copy_run(reference, tmp_path)
  _flip_one_byte(workdir, 8)
  _truncate(workdir, 4)
  with pytest.raises(checkpointing.CheckpointError) as error:
    train.train_and_evaluate(rs.config(), workdir)
  message = str(error.value)
  assert "none of the 2 checkpoint(s) in" in message
  assert "step 8: ValueError: checkpoint" in message and "do not match the checksums" in message
  assert "step 4: " in message
  assert checkpointing.existing_steps(os.path.join(workdir, "checkpoints")) == [4, 8]
  assert not os.path.exists(os.path.join(workdir, "checkpoints" + checkpointing.CORRUPT_SUFFIX))


@pytest.mark.slow
def test_a_different_model_forced_onto_old_checkpoints_is_not_taken_for_damage(reference, tmp_path):
  workdir = _copy_run(reference, tmp_path)
  config = rs.config(**{"model.first_layer": "free", "allow_config_change": True})
  with pytest.raises(checkpointing.CheckpointError, match="none of the 2 checkpoint"):
    train.train_and_evaluate(config, workdir)
  assert checkpointing.existing_steps(os.path.join(workdir, "checkpoints")) == [4, 8]


def _numpy_checksum(array: np.ndarray) -> int:
  bits = np.ascontiguousarray(array).view(np.uint32).reshape(-1).astype(np.uint64)
  weights = 2 * np.arange(bits.size, dtype=np.uint64) + 1
  return int(np.sum((bits * weights) % 2**32) % 2**32)


def test_checksums_match_an_independent_computation_and_see_every_bit():
  rng = np.random.default_rng(0)
  tree = {
    "w": rng.normal(size=(3, 5, 7)).astype(np.float32),
    "count": np.asarray(7, np.int32),
    "key": np.asarray([1, 2**32 - 1], np.uint32),
  }
  sums = checkpointing.fingerprint(jax.tree.map(jnp.asarray, tree))
  assert sums == {
    "count": _numpy_checksum(tree["count"]),
    "key": _numpy_checksum(tree["key"]),
    "w": _numpy_checksum(tree["w"]),
  }
  words = tree["w"].view(np.uint32).reshape(-1)
  for index, bit in [(0, 0), (50, 17), (104, 31)]:  # first, middle and last element
    flipped = words.copy()
    flipped[index] ^= np.uint32(1 << bit)
    damaged = {**tree, "w": flipped.view(np.float32).reshape(tree["w"].shape)}
    problem = checkpointing.first_mismatch(sums, checkpointing.fingerprint(damaged))
    assert problem == "1 of 3 arrays do not match the checksums saved with it (first: w)"
  swapped = tree["w"].reshape(-1).copy()
  swapped[[3, 4]] = swapped[[4, 3]]
  swapped_sums = checkpointing.fingerprint({**tree, "w": swapped.reshape(tree["w"].shape)})
  assert swapped_sums["w"] != sums["w"]
