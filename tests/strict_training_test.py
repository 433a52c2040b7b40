"""Strict checks of training and evaluation semantics against independent numpy references.

End-to-end tests elsewhere check evaluation only as ``0 <= acc <= 1``; here the
final ``eval/accuracy`` and ``eval/loss`` of a tiny run are recomputed in numpy
from its checkpoint, padded eval rows carry wrong labels, the train loss is
compared with a hand-written label-smoothed cross-entropy, and a damaged data
iterator state in a checkpoint must be refused.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import tiny
from hybridconv import data, sharding, tracking
from hybridconv.training import checkpointing, metrics, optim, train
from hybridconv.training import state as ts
from hybridconv.training.durations import RunClock

IMAGE_SHAPE = (16, 16, 1)
NUM_CLASSES = 4


def _log_softmax(logits):
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _smoothed_ce(logits, labels, smoothing):
  """Mean cross-entropy against (1 - a) one_hot + a / K targets, in float64."""
  log_probs = _log_softmax(logits)
  k = log_probs.shape[-1]
  targets = np.full(log_probs.shape, smoothing / k)
  targets[np.arange(len(labels)), np.asarray(labels)] += 1 - smoothing
  return float(-(targets * log_probs).sum(-1).mean())


# ---------------------------------------------------------------------------
# eval_sums: masks, top-k, plain (never smoothed) loss


def test_eval_sums_ignore_padded_rows_that_carry_wrong_labels():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(12, 10)).astype(np.float32) * 3
  labels = rng.integers(0, 10, size=12)
  mask = np.arange(12) < 9
  # Padding rows carry labels that would change every sum if counted: row 9 is
  # predicted correctly (top-1 and top-5), rows 10-11 wrongly with a huge loss.
  labels[9] = np.argmax(logits[9])
  labels[10:] = (np.argmax(logits[10:], -1) + 1) % 10
  logits[np.arange(10, 12), labels[10:]] = -50.0
  sums = {
    k: float(v)
    for k, v in metrics.eval_sums(
      jnp.asarray(logits), jnp.asarray(labels, jnp.int32), jnp.asarray(mask)
    ).items()
  }
  real_logits, real_labels = logits[:9], labels[:9]
  log_probs = _log_softmax(real_logits)
  expected_loss = -log_probs[np.arange(9), real_labels].sum()
  order = np.argsort(-real_logits, axis=-1)
  assert sums["count"] == 9
  assert sums["loss"] == pytest.approx(expected_loss, rel=1e-5)
  assert sums["correct"] == np.sum(order[:, 0] == real_labels)
  assert sums["correct_top5"] == np.sum((order[:, :5] == real_labels[:, None]).any(-1))
  assert 0 < sums["correct"] < sums["correct_top5"] < 9  # the data exercise both counts
  summary = metrics.summarize_eval(sums)
  assert summary["eval/loss"] == pytest.approx(expected_loss / 9, rel=1e-5)
  assert summary["eval/accuracy"] == pytest.approx(sums["correct"] / 9)
  assert summary["eval/top5_accuracy"] == pytest.approx(sums["correct_top5"] / 9)


def test_top1_ties_go_to_the_label_and_few_classes_have_no_top5():
  logits = jnp.asarray([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
  sums = metrics.eval_sums(logits, jnp.asarray([1, 2]), jnp.ones(2, bool))
  assert float(sums["correct"]) == 2 and "correct_top5" not in sums


# ---------------------------------------------------------------------------
# The train step: label smoothing and bfloat16 compute


def _batch(batch_size=8, seed=0):
  rng = np.random.default_rng(seed)
  return {
    "image": jnp.asarray(rng.normal(size=(batch_size, *IMAGE_SHAPE)), jnp.float32),
    "label": jnp.asarray(rng.integers(0, NUM_CLASSES, size=batch_size), jnp.int32),
  }


def _setup(variant="hybrid", *, label_smoothing=0.0, compute_dtype="float32"):
  config = tiny.get_config(variant)
  config.compute_dtype = compute_dtype
  mesh = sharding.make_mesh(jax.devices()[:1])
  tx, schedule = optim.build_optimizer(
    config.optim, RunClock(steps_per_epoch=4, batch_size=config.batch_size, total_steps=8)
  )
  fns, state = train.create_train_state(
    config, num_classes=NUM_CLASSES, image_shape=IMAGE_SHAPE, mesh=mesh, tx=tx
  )
  step = jax.jit(
    functools.partial(
      train.train_step, model_fns=fns, tx=tx, schedule=schedule, label_smoothing=label_smoothing
    )
  )
  return fns, state, step


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.slow
def test_train_step_loss_is_the_label_smoothed_cross_entropy(smoothing):
  fns, state, step = _setup(label_smoothing=smoothing)
  batch = _batch()
  logits, _ = fns.apply(
    state.params, state.model_state, batch["image"], train=True, key=ts.step_key(state)
  )
  _, scalars = step(state, batch)
  loss = float(scalars["train/loss"])
  assert loss == pytest.approx(_smoothed_ce(logits, batch["label"], smoothing), rel=1e-5)
  one_hot = jax.nn.one_hot(batch["label"], NUM_CLASSES)
  reference = optax.softmax_cross_entropy(logits, optax.smooth_labels(one_hot, smoothing)).mean()
  assert loss == pytest.approx(float(reference), rel=1e-5)
  if smoothing:
    assert abs(loss - _smoothed_ce(logits, batch["label"], 0.0)) > 1e-3


@pytest.mark.slow
def test_label_smoothing_changes_the_gradient():
  _, state, plain = _setup(label_smoothing=0.0)
  _, _, smoothed = _setup(label_smoothing=0.3)
  batch = _batch()
  # The steps are jitted without donation, so both can read the same state.
  a = float(plain(state, batch)[1]["train/grad_norm"])
  b = float(smoothed(state, batch)[1]["train/grad_norm"])
  assert abs(a - b) > 1e-4 * a


@pytest.mark.slow
def test_bfloat16_loss_matches_float32_within_bf16_precision():
  """The same initial params and batch: bf16 activations change the loss by < 2%, not 0."""
  _, state32, step32 = _setup(compute_dtype="float32")
  fns16, state16, step16 = _setup(compute_dtype="bfloat16")
  for a, b in zip(jax.tree.leaves(state32.params), jax.tree.leaves(state16.params), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  batch = _batch(batch_size=16)
  logits, _ = fns16.apply(
    state16.params, state16.model_state, batch["image"], train=True, key=ts.step_key(state16)
  )
  assert logits.dtype == jnp.bfloat16  # the layers compute in bf16, not only the input cast
  loss32 = float(step32(state32, batch)[1]["train/loss"])
  loss16 = float(step16(state16, batch)[1]["train/loss"])
  assert loss16 == pytest.approx(loss32, rel=2e-2)
  assert loss16 != loss32, "bfloat16 compute had no effect on the loss"


# ---------------------------------------------------------------------------
# A tiny run, re-evaluated independently from its checkpoint


@pytest.fixture(scope="module")
def smoothed_run(tmp_path_factory):
  config = tiny.get_config("hybrid")
  config.label_smoothing = 0.2
  config.log_every = "1 steps"
  config.data.gratings.num_test = 100  # eval batches 64 + 36 real and 28 padding rows
  config.lock()
  workdir = str(tmp_path_factory.mktemp("smoothed"))
  final = train.train_and_evaluate(config, workdir)
  return config, workdir, final


def _initial_state(config):
  mesh = sharding.make_mesh(jax.devices()[:1])
  pipeline = data.build_pipeline(
    config.data,
    global_batch_size=config.batch_size,
    eval_batch_size=config.eval_batch_size,
    seed=config.seed,
    mesh=mesh,
  )
  tx, _ = optim.build_optimizer(config.optim, train.run_clock(config, pipeline.steps_per_epoch))
  fns, state = train.create_train_state(
    config, num_classes=pipeline.num_classes, image_shape=pipeline.image_shape, mesh=mesh, tx=tx
  )
  return pipeline, fns, state


@pytest.mark.slow
def test_final_eval_metrics_equal_a_numpy_evaluation_of_the_checkpoint(smoothed_run):
  config, workdir, final = smoothed_run
  _, fns, state = _initial_state(config)
  with checkpointing.Checkpointer(
    os.path.join(workdir, "checkpoints"), keep=5, keep_best=0, async_save=False
  ) as ckpt:
    total_steps = train.run_clock(config, 1).total_steps  # train_for is in steps here
    assert ckpt.latest_step() == total_steps
    restored, _, _ = ckpt.restore(total_steps, ts.abstract_like(state))
  dataset = data.load_dataset(config.data)
  train_pixels = dataset.train_images.astype(np.float64) / 255
  mean = train_pixels.reshape(-1, train_pixels.shape[-1]).mean(0)
  std = train_pixels.reshape(-1, train_pixels.shape[-1]).std(0)
  images = (dataset.test_images.astype(np.float64) / 255 - mean) / std
  labels = np.asarray(dataset.test_labels)
  assert len(labels) == 100
  logits, _ = fns.apply(
    restored.params,
    restored.model_state,
    jnp.asarray(images, jnp.float32),
    train=False,
    key=jax.random.key(0),
  )
  logits = np.asarray(logits, np.float64)
  accuracy = np.mean(np.argmax(logits, -1) == labels)
  loss = -_log_softmax(logits)[np.arange(len(labels)), labels].mean()  # plain NLL, no smoothing
  assert final["eval/accuracy"] == pytest.approx(accuracy, abs=1e-6)
  assert final["eval/loss"] == pytest.approx(loss, rel=1e-4)
  assert final["eval/loss"] != pytest.approx(_smoothed_ce(logits, labels, 0.2), rel=1e-3)


@pytest.mark.slow
def test_first_logged_train_loss_is_label_smoothed_as_configured(smoothed_run):
  config, workdir, _ = smoothed_run
  pipeline, fns, state = _initial_state(config)
  batch = pipeline.train_batch(0)
  logits, _ = fns.apply(
    state.params, state.model_state, batch["image"], train=True, key=ts.step_key(state)
  )
  first = next(e for e in tracking.read_events(workdir) if "train/loss" in e)
  assert first["step"] == 1
  expected = _smoothed_ce(logits, batch["label"], 0.2)
  assert first["train/loss"] == pytest.approx(expected, rel=1e-4)
  assert abs(first["train/loss"] - _smoothed_ce(logits, batch["label"], 0.0)) > 1e-3


# ---------------------------------------------------------------------------
# Checkpointed data-iterator state


def _find(root, name):
  for directory, _, files in os.walk(root):
    for file in files:
      path = os.path.join(directory, file)
      with open(path, "rb") as f:
        if name.encode() in f.read():
          return path
  raise AssertionError(f"no file under {root} contains {name!r}")


def test_a_damaged_data_iterator_state_is_refused_on_restore(tmp_path):
  state = {"w": jnp.arange(3, dtype=jnp.float32)}
  data_state = {"next_index": 17, "epoch": 2, "marker": "iterator-state"}
  with checkpointing.Checkpointer(str(tmp_path), keep=2, keep_best=0, async_save=False) as ckpt:
    ckpt.save(5, state, config_json={}, metadata={"step": 5}, data_state=data_state)
    ckpt.wait_until_finished()
    restored, metadata, restored_data = ckpt.restore(5, ts.abstract_like(state))
  assert restored_data == data_state
  assert metadata == {"step": 5}  # checksums are verified and removed
  path = _find(str(tmp_path / "5" / "data"), "iterator-state")
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  saved["next_index"] = 18  # one record off: the resumed run would silently skip data
  with open(path, "w", encoding="utf-8") as f:
    json.dump(saved, f)
  with checkpointing.Checkpointer(str(tmp_path), keep=2, keep_best=0, async_save=False) as ckpt:
    with pytest.raises(ValueError, match="data iterator state does not match its checksum"):
      ckpt.restore(5, ts.abstract_like(state))
