"""The pure train step: golden values, what it updates and what it must never touch."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from hybridconv import sharding
from hybridconv.nn import FrozenKernel
from hybridconv.training import optim, train
from hybridconv.training import state as ts
from hybridconv.training.durations import RunClock

IMAGE_SHAPE = (16, 16, 1)
NUM_CLASSES = 4


def _batch(batch_size=8, seed=0):
  rng = np.random.default_rng(seed)
  return {
    "image": jnp.asarray(rng.normal(size=(batch_size, *IMAGE_SHAPE)), jnp.float32),
    "label": jnp.asarray(rng.integers(0, NUM_CLASSES, size=batch_size), jnp.int32),
  }


def _setup(variant="hybrid", **optim_overrides):
  config = tiny.get_config(variant)
  for key, value in optim_overrides.items():
    setattr(config.optim, key, value)
  mesh = sharding.make_mesh(jax.devices()[:1])
  tx, schedule = optim.build_optimizer(
    config.optim, RunClock(steps_per_epoch=4, batch_size=config.batch_size, total_steps=8)
  )
  model_fns, state = train.create_train_state(
    config, num_classes=NUM_CLASSES, image_shape=IMAGE_SHAPE, mesh=mesh, tx=tx
  )
  step = jax.jit(
    functools.partial(
      train.train_step,
      model_fns=model_fns,
      tx=tx,
      schedule=schedule,
      label_smoothing=config.label_smoothing,
    )
  )
  return model_fns, state, step


def _flat(tree):
  return {
    optim.path_name(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


GOLDEN = {
  "loss": 1.3973349332809448,
  "grad_norm": 4.437060356140137,
  "abs_param_sum": 671.4676488153636,
}


def test_one_step_golden_values():
  # Pinned from this implementation (jax 0.12 CPU, per-layer init streams). A change means the
  # model's initialisation, the loss, the optimiser or the step changed: check it was meant.
  _, state, step = _setup("hybrid", warmup="0 steps", schedule="constant")
  new_state, metrics = step(state, _batch())
  params = _flat(new_state.params)
  assert float(metrics["train/loss"]) == pytest.approx(GOLDEN["loss"], rel=1e-5)
  assert float(metrics["train/grad_norm"]) == pytest.approx(GOLDEN["grad_norm"], rel=1e-4)
  assert sum(float(np.abs(v).sum()) for v in params.values()) == pytest.approx(
    GOLDEN["abs_param_sum"], rel=1e-5
  )
  assert int(new_state.step) == 1


@pytest.mark.slow
def test_step_loss_is_the_cross_entropy_of_the_train_mode_logits():
  model_fns, state, step = _setup("hybrid")
  batch = _batch()
  logits, _ = model_fns.apply(
    state.params, state.model_state, batch["image"], train=True, key=ts.step_key(state)
  )
  logits = np.asarray(logits, np.float64)
  log_probs = logits - logits.max(-1, keepdims=True)
  log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
  expected = -log_probs[np.arange(len(logits)), np.asarray(batch["label"])].mean()
  _, metrics = step(state, batch)
  assert float(metrics["train/loss"]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_step_updates_params_and_batch_stats_but_never_frozen_kernels():
  model_fns, state, step = _setup("gabor")
  before_params = _flat(state.params)
  before_state = _flat(state.model_state)
  frozen_paths = {
    optim.path_name(p)
    for p, v in jax.tree_util.tree_flatten_with_path(
      state.model_state, is_leaf=lambda x: isinstance(x, nnx.Variable)
    )[0]
    if isinstance(v, FrozenKernel)
  }
  assert frozen_paths, "the gabor variant should have frozen (non-learned) Gabor parameters"
  for seed in range(2):
    state, _ = step(state, _batch(seed=seed))
  after_params, after_state = _flat(state.params), _flat(state.model_state)
  for key, value in before_params.items():
    assert not np.array_equal(value, after_params[key]), f"param {key} did not change"
  for key, value in before_state.items():
    is_frozen = any(key.startswith(p) for p in frozen_paths)
    changed = not np.array_equal(value, after_state[key])
    assert changed != is_frozen, f"{key}: frozen={is_frozen} changed={changed}"
  del model_fns


def test_step_key_depends_only_on_seed_and_step():
  _, state, _ = _setup("free")
  key_a = ts.step_key(state)
  key_b = ts.step_key(state.replace(step=state.step + 1))
  assert not np.array_equal(jax.random.key_data(key_a), jax.random.key_data(key_b))
  np.testing.assert_array_equal(jax.random.key_data(key_a), jax.random.key_data(ts.step_key(state)))


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_params():
  config = tiny.get_config("hybrid")
  config.compute_dtype = "bfloat16"
  mesh = sharding.make_mesh(jax.devices()[:1])
  tx, schedule = optim.build_optimizer(
    config.optim, RunClock(steps_per_epoch=4, batch_size=config.batch_size, total_steps=8)
  )
  model_fns, state = train.create_train_state(
    config, num_classes=NUM_CLASSES, image_shape=IMAGE_SHAPE, mesh=mesh, tx=tx
  )
  logits, _ = model_fns.apply(
    state.params, state.model_state, _batch()["image"], train=False, key=jax.random.key(0)
  )
  assert logits.dtype == jnp.bfloat16
  step = jax.jit(
    functools.partial(
      train.train_step, model_fns=model_fns, tx=tx, schedule=schedule, label_smoothing=0.0
    )
  )
  new_state, metrics = step(state, _batch())
  assert np.isfinite(float(metrics["train/loss"]))
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(new_state.params))


@pytest.mark.slow
def test_kernel_lr_multiplier_reaches_the_models_gabor_parameters():
  def update(multiplier):
    _, state, step = _setup(
      "gabor",
      name="sgd",
      momentum=0.0,
      weight_decay=0.0,
      schedule="constant",
      warmup="0 steps",
      kernel_lr_multiplier=multiplier,
    )
    new_state, _ = step(state, _batch())
    return {k: _flat(new_state.params)[k] - v for k, v in _flat(state.params).items()}

  plain, boosted = update(1.0), update(10.0)
  gabor_keys = [k for k in plain if k.split("/")[-2] in ("theta", "frequency")]
  assert gabor_keys, sorted(plain)
  for key in plain:
    factor = 10.0 if key in gabor_keys else 1.0
    # atol: the differences are new - old in float32, with parameters of order 1-10.
    np.testing.assert_allclose(boosted[key], factor * plain[key], rtol=1e-3, atol=5e-6, err_msg=key)
  for key in gabor_keys:  # they moved enough for the factor to be visible
    assert np.abs(plain[key]).max() > 1e-4, key
