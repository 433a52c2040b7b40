"""Optimiser construction: masks by parameter path, schedules, multipliers, validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from configs import default
from hybridconv.training import optim
from hybridconv.training.durations import RunClock


class _Gabor(nnx.Module):
  def __init__(self):
    self.theta = nnx.Param(jnp.full((4,), 0.5), kernel_parameter=True)
    # 2-D on purpose: still no decay.
    self.frequency = nnx.Param(jnp.full((4, 2), 0.5), kernel_parameter=True)
    self.mix = nnx.Param(jnp.full((4, 2), 0.5))  # a plain 2-D Param in the same module


class _Net(nnx.Module):
  def __init__(self):
    self.conv = nnx.Conv(1, 4, (3, 3), rngs=nnx.Rngs(0))
    self.gabor = _Gabor()
    self.bn = nnx.BatchNorm(4, rngs=nnx.Rngs(0))


def _params():
  return nnx.split(_Net(), nnx.Param, ...)[1]


def _flat(tree):
  return {optim.path_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _clock(*, steps_per_epoch: int, total_steps: int) -> RunClock:
  return RunClock(steps_per_epoch=steps_per_epoch, batch_size=32, total_steps=total_steps)


def _optim_config(**overrides):
  config = default.get_config().optim
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def test_masks_follow_variable_types_and_ranks():
  decay = _flat(optim.weight_decay_mask(_params()))
  kernel = _flat(optim.kernel_param_mask(_params()))
  assert decay == {
    "bn/bias/value": False,
    "bn/scale/value": False,
    "conv/bias/value": False,
    "conv/kernel/value": True,
    "gabor/frequency/value": False,
    "gabor/theta/value": False,
    "gabor/mix/value": True,
  }
  assert {k for k, v in kernel.items() if v} == {"gabor/frequency/value", "gabor/theta/value"}


def _one_update(config, grads_value=1.0):
  params = _params()
  tx, _ = optim.build_optimizer(config, _clock(steps_per_epoch=5, total_steps=10))
  grads = jax.tree.map(lambda x: jnp.full_like(x, grads_value), params)
  updates, _ = tx.update(grads, tx.init(params), params)
  return _flat(params), _flat(updates)


def test_sgd_step_decay_and_kernel_multiplier():
  config = _optim_config(
    name="sgd",
    schedule="constant",
    warmup="0 steps",
    learning_rate=0.1,
    momentum=0.9,
    nesterov=False,
    weight_decay=0.01,
    kernel_lr_multiplier=5.0,
  )
  params, updates = _one_update(config)
  # First momentum step is the gradient itself: update = -lr * (g + wd * p) for decayed weights.
  kernel = params["conv/kernel/value"]
  np.testing.assert_allclose(updates["conv/kernel/value"], -0.1 * (1.0 + 0.01 * kernel), rtol=1e-6)
  np.testing.assert_allclose(updates["conv/bias/value"], -0.1, rtol=1e-6)
  np.testing.assert_allclose(updates["bn/scale/value"], -0.1, rtol=1e-6)
  np.testing.assert_allclose(updates["gabor/theta/value"], -0.5, rtol=1e-6)
  np.testing.assert_allclose(updates["gabor/frequency/value"], -0.5, rtol=1e-6)


def test_adamw_decoupled_decay_and_multiplier():
  config = _optim_config(
    name="adamw",
    schedule="constant",
    warmup="0 steps",
    learning_rate=0.01,
    weight_decay=0.1,
    kernel_lr_multiplier=3.0,
  )
  params, updates = _one_update(config, grads_value=2.0)
  # Adam's first step moves every weight by ~lr regardless of gradient scale.
  kernel = params["conv/kernel/value"]
  np.testing.assert_allclose(updates["conv/kernel/value"], -0.01 * (1.0 + 0.1 * kernel), rtol=1e-5)
  np.testing.assert_allclose(updates["conv/bias/value"], -0.01, rtol=1e-5)
  np.testing.assert_allclose(updates["gabor/theta/value"], -0.03, rtol=1e-5)


def test_gradient_clipping_bounds_the_update():
  config = _optim_config(
    name="sgd",
    schedule="constant",
    warmup="0 steps",
    learning_rate=1.0,
    momentum=0.0,
    weight_decay=0.0,
    kernel_lr_multiplier=1.0,
    grad_clip_norm=0.5,
  )
  _, updates = _one_update(config, grads_value=100.0)
  assert float(optax.tree.norm(list(updates.values()))) == pytest.approx(0.5, rel=1e-5)


def test_warmup_cosine_schedule():
  config = _optim_config(
    schedule="cosine", learning_rate=1.0, warmup="1 epoch", end_learning_rate_factor=0.1
  )
  schedule = optim.learning_rate_schedule(config, _clock(steps_per_epoch=10, total_steps=100))
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(0.5)
  assert float(schedule(10)) == pytest.approx(1.0)
  assert float(schedule(55)) == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-5)  # cosine midpoint
  assert float(schedule(100)) == pytest.approx(0.1)


def test_step_schedule_with_warmup():
  config = _optim_config(
    schedule="step",
    learning_rate=1.0,
    warmup="10 steps",
    step_at=("3 epochs", "60%"),
    step_factor=0.1,
  )
  schedule = optim.learning_rate_schedule(config, _clock(steps_per_epoch=10, total_steps=100))
  values = [float(schedule(s)) for s in (5, 10, 29, 30, 59, 60, 99)]
  np.testing.assert_allclose(values, [0.5, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)


@pytest.mark.parametrize(
  ("key", "value", "message"),
  [
    ("name", "lamb", "config.optim.name='lamb' is not one of ('sgd', 'adamw')"),
    ("schedule", "linear", "config.optim.schedule='linear' is not one of"),
    ("learning_rate", -1.0, "config.optim.learning_rate=-1.0 must be a finite number >= 0"),
    ("weight_decay", float("nan"), "config.optim.weight_decay=nan"),
  ],
)
def test_bad_settings_are_refused(key, value, message):
  config = _optim_config(**{key: value})
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    optim.build_optimizer(config, _clock(steps_per_epoch=5, total_steps=10))


def test_a_reference_batch_size_scales_the_rate_to_the_runs_batch():
  config = _optim_config(schedule="constant", warmup="0 steps", learning_rate=0.1)
  config.reference_batch_size = 256
  for batch in (256, 1024, 64):
    clock = RunClock(steps_per_epoch=10, batch_size=batch, total_steps=100)
    assert float(optim.learning_rate_schedule(config, clock)(50)) == pytest.approx(
      0.1 * batch / 256
    )
  config.reference_batch_size = 0  # the rate as it is
  assert float(
    optim.learning_rate_schedule(config, _clock(steps_per_epoch=1, total_steps=9))(5)
  ) == (pytest.approx(0.1))


@pytest.mark.parametrize("variant", ["resnet50", "alexnet"])
def test_recipes_keep_their_rate_per_image_when_the_batch_is_overridden(variant):
  from configs import imagefolder, imagenet  # noqa: PLC0415

  config = imagenet.get_config(variant)
  at_1024 = optim.peak_learning_rate(config.optim, config.batch_size)
  assert optim.peak_learning_rate(config.optim, 512) == pytest.approx(at_1024 / 2)
  folder = imagefolder.get_config(variant)
  assert optim.peak_learning_rate(folder.optim, folder.batch_size) == pytest.approx(at_1024 / 4)
  assert at_1024 == pytest.approx({"resnet50": 0.4, "alexnet": 0.08}[variant])
