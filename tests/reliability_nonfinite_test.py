"""NaN/Inf: stop naming the step and the quantity, or skip the update -- BatchNorm included.

NaNs are injected with the ``nan@step:N`` test hook (``hybridconv/training/faults.py``),
which replaces the images of the batch of update N with NaN, and with an
absurd learning rate, the way they usually arrive.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybridconv import sharding, tracking
from hybridconv.training import checkpointing, faults, nonfinite, optim, train
from hybridconv.training.durations import RunClock
from tests import reliability_support as rs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  return rs.reference(tmp_path_factory)


def _step_setup():
  config = rs.config()
  mesh = sharding.make_mesh(jax.devices()[:1])
  tx, schedule = optim.build_optimizer(
    config.optim, RunClock(steps_per_epoch=8, batch_size=config.batch_size, total_steps=8)
  )
  model_fns, state = train.create_train_state(
    config, num_classes=4, image_shape=(16, 16, 1), mesh=mesh, tx=tx
  )
  step = functools.partial(
    train.train_step, model_fns=model_fns, tx=tx, schedule=schedule, label_smoothing=0.0
  )
  rng = np.random.default_rng(0)
  batch = {
    "image": jnp.asarray(rng.normal(size=(8, 16, 16, 1)), jnp.float32),
    "label": jnp.asarray(rng.integers(0, 4, size=8), jnp.int32),
  }
  return state, step, batch


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.slow
def test_skip_keeps_params_optimizer_and_batchnorm_state_bit_for_bit():
  state, step, batch = _step_setup()
  skip = jax.jit(functools.partial(step, skip_nonfinite=True))
  plain = jax.jit(step)
  assert any(
    "mean" in optim.path_name(p)
    for p, _ in jax.tree_util.tree_flatten_with_path(state.model_state)[0]
  )  # BatchNorm statistics
  before = _leaves((state.params, state.opt_state, state.model_state))

  poisoned = {**batch, "image": batch["image"].at[0, 3, 3, 0].set(jnp.nan)}
  skipped, metrics = skip(state, poisoned)
  assert int(skipped.step) == int(state.step) + 1  # the batch is consumed, the update dropped
  for old, new in zip(
    before, _leaves((skipped.params, skipped.opt_state, skipped.model_state)), strict=True
  ):
    np.testing.assert_array_equal(new, old)
  assert float(metrics["train/nonfinite"]) == 1.0
  assert not bool(metrics[nonfinite.FLAGS_KEY]["loss"])

  # Without skipping, the same batch poisons the parameters and the BatchNorm statistics.
  poisoned_state, _ = plain(state, poisoned)
  assert not all(np.isfinite(x).all() for x in _leaves(poisoned_state.params))
  assert not all(np.isfinite(x).all() for x in _leaves(poisoned_state.model_state))

  # A finite batch gives exactly the update of the step without the skip logic.
  (kept, kept_metrics), (updated, _) = skip(state, batch), plain(state, batch)
  for a, b in zip(_leaves(kept), _leaves(updated), strict=True):
    np.testing.assert_array_equal(a, b)
  assert float(kept_metrics["train/nonfinite"]) == 0.0


def test_monitor_names_the_step_and_the_non_finite_gradients():
  names = ["conv1/kernel", "conv1/bias", "fc/kernel", "fc/bias"]
  monitor = nonfinite.NonFiniteMonitor("stop", 3, names)
  monitor.check(5, {"train/loss": 0.5}, {"loss": True, "grads": np.ones(4, bool)})
  flags = {"loss": True, "grads": np.asarray([True, False, True, False])}
  with pytest.raises(
    nonfinite.NonFiniteError,
    match=(
      r"non-finite training at step 6: the gradients of 2 of 4 parameter arrays are "
      r"non-finite \(conv1/bias, fc/bias\); stopped without saving"
    ),
  ) as error:
    monitor.check(6, {"train/loss": 0.5}, flags)
  assert error.value.step == 6
  with pytest.raises(ValueError, match=r"config.nan_policy='ignore' is not one of"):
    nonfinite.NonFiniteMonitor("ignore", 3, names)


@pytest.mark.slow
def test_nan_stops_naming_the_step_and_resume_loses_only_unsaved_steps(reference, tmp_path):
  stopped = rs.run_cli(tmp_path, fault="nan@step:6")
  assert stopped.returncode == nonfinite.EXIT_CODE == 3, stopped.stderr[-2000:]
  errors = [line for line in stopped.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and errors[0].startswith(
    "error: non-finite training at step 6: the loss is nan and the gradients of "
  )
  assert "Traceback" not in stopped.stderr
  # Nothing after the poisoned update was saved; checkpoint 4 is the last.
  assert checkpointing.existing_steps(str(tmp_path / "checkpoints")) == [4]
  final = train.train_and_evaluate(rs.config(), str(tmp_path))  # the fault was transient
  rs.assert_same_run(tmp_path, final, reference)


def test_absurd_learning_rate_stops_and_no_checkpoint_holds_non_finite_values(tmp_path):
  config = rs.config(**{"optim.learning_rate": 1e30, "optim.warmup": "0 steps"})
  with pytest.raises(nonfinite.NonFiniteError, match=r"non-finite training at step \d"):
    train.train_and_evaluate(config, str(tmp_path))
  for step in checkpointing.existing_steps(str(tmp_path / "checkpoints")):
    assert all(
      np.isfinite(v).all()
      for v in rs.saved_arrays(tmp_path, step).values()
      if np.issubdtype(v.dtype, np.floating)
    )


@pytest.mark.slow
def test_skip_policy_skips_then_stops_after_too_many_in_a_row(tmp_path, monkeypatch):
  skip = {"nan_policy": "skip", "max_consecutive_skips": 2}
  monkeypatch.setenv(faults.ENV_VAR, "nan@step:3-4")
  final = train.train_and_evaluate(rs.config(**skip), str(tmp_path / "two"))
  assert final["step"] == rs.TOTAL_STEPS and np.isfinite(final["eval/loss"])
  logged = {
    e["step"]: e["train/nonfinite"]
    for e in tracking.read_events(str(tmp_path / "two"))
    if "train/nonfinite" in e
  }
  assert logged == {2: 0.0, 4: 1.0, 6: 0.0, 8: 0.0}  # steps 3 and 4 were skipped

  monkeypatch.setenv(faults.ENV_VAR, "nan@step:3-5")
  with pytest.raises(
    nonfinite.NonFiniteError,
    match=(
      r"non-finite training for 3 consecutive steps, more than config.max_consecutive_skips=2 "
      r"\(last at step 5: the loss is nan"
    ),
  ):
    train.train_and_evaluate(rs.config(**skip), str(tmp_path / "three"))
  assert not os.path.exists(tmp_path / "three" / "checkpoints" / "8")
