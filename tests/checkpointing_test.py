"""Checkpointer: latest-N plus best-by-accuracy retention, across restarts; restore targets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hybridconv.training import checkpointing, optim
from hybridconv.training import state as ts


def _state(value: float):
  return {"w": jnp.full((3,), value, jnp.float32), "step": jnp.asarray(int(value), jnp.int32)}


def _save(checkpointer, step, accuracy):
  metrics = None if accuracy is None else {"eval/accuracy": accuracy, "eval/loss": 1 - accuracy}
  checkpointer.save(
    step, _state(step), config_json={"seed": 0}, metadata={"step": step}, metrics=metrics
  )


def test_keeps_latest_and_best_across_restarts(tmp_path):
  with checkpointing.Checkpointer(str(tmp_path), keep=2, keep_best=1, async_save=True) as ckpt:
    for step, accuracy in [(1, 0.5), (2, 0.9), (3, 0.6), (4, None), (5, 0.65)]:
      _save(ckpt, step, accuracy)
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [2, 4, 5]
    assert ckpt.best_step() == 2
  # A new manager (a resumed run) must still know that step 2 is the best.
  with checkpointing.Checkpointer(str(tmp_path), keep=2, keep_best=1, async_save=True) as ckpt:
    _save(ckpt, 6, 0.1)
    _save(ckpt, 7, 0.2)
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [2, 6, 7]
    assert ckpt.latest_step() == 7


def test_restore_into_abstract_target_with_shardings(tmp_path):
  with checkpointing.Checkpointer(str(tmp_path), keep=1, keep_best=0, async_save=False) as ckpt:
    assert ckpt.latest_step() is None
    _save(ckpt, 3, 0.7)
    assert not ckpt.save(3, _state(9), config_json={}, metadata={})  # existing step: no-op
    target = ts.abstract_like(_state(0))
    state, metadata, data_state = ckpt.restore(3, target)
  np.testing.assert_array_equal(state["w"], np.full((3,), 3.0, np.float32))
  assert state["w"].sharding == target["w"].sharding
  assert metadata == {"step": 3} and data_state is None
  assert isinstance(state["w"], jax.Array)


def test_checksum_names_of_a_train_state_stay_readable():
  """Checkpoint metadata keys its checksums by these names: pinned so old checkpoints match."""

  class Net(nnx.Module):
    def __init__(self):
      self.conv1 = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
      self.blocks = nnx.List([nnx.BatchNorm(3, rngs=nnx.Rngs(0))])

  _, params, rest = nnx.split(Net(), nnx.Param, ...)
  tx = optax.sgd(0.1, momentum=0.9)
  tree = {
    "step": jnp.zeros((), jnp.int32),
    "params": params,
    "opt_state": tx.init(params),
    "rng": jax.random.key_data(jax.random.key(0)),
  }
  names = list(checkpointing.fingerprint(tree))
  assert {
    "step",
    "rng",
    "params/conv1/kernel/value",
    "params/conv1/bias/value",
    "params/blocks/0/scale/value",
    "opt_state/0/trace/conv1/kernel/value",
  } <= set(names), names
  assert [optim.path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]] == [
    n[len("params/") :] for n in names if n.startswith("params/")
  ]
