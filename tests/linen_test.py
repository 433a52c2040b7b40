"""hybridconv.linen: Linen's conv signature over the NNX layers, in a Flax-examples-style ResNet."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import linen

import hybridconv.linen

ModuleDef = Any


class ResNetBlock(linen.Module):
  """A residual block written as in the Flax examples (ImageNet ResNet): ``conv: ModuleDef``."""

  filters: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable
  strides: tuple[int, int] = (1, 1)

  @linen.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.filters, (3, 3), self.strides)(x)
    y = self.act(self.norm()(y))
    y = self.conv(self.filters, (3, 3))(y)
    y = self.norm(scale_init=linen.initializers.zeros_init())(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters, (1, 1), self.strides, name="conv_proj")(residual)
      residual = self.norm(name="norm_proj")(residual)
    return self.act(residual + y)


class ResNet(linen.Module):
  stage_sizes: Sequence[int]
  num_classes: int
  num_filters: int = 8
  conv: ModuleDef = linen.Conv

  @linen.compact
  def __call__(self, x, train: bool = True):
    conv = functools.partial(self.conv, use_bias=False, dtype=jnp.float32)
    norm = functools.partial(
      linen.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=jnp.float32
    )
    x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="conv_init")(x)
    x = linen.relu(norm(name="bn_init")(x))
    x = linen.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    for i, block_size in enumerate(self.stage_sizes):
      for j in range(block_size):
        strides = (2, 2) if i > 0 and j == 0 else (1, 1)
        x = ResNetBlock(
          self.num_filters * 2**i, strides=strides, conv=conv, norm=norm, act=linen.relu
        )(x)
    return linen.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


IMAGES = jax.random.normal(jax.random.key(0), (8, 16, 16, 3))
LABELS = jnp.arange(8) % 4


def _paths(tree) -> set[str]:
  return {jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize(
  "kwargs",
  [
    {
      "strides": (2, 1),
      "padding": [(1, 2), (0, 1)],
      "kernel_dilation": (1, 2),
      "feature_group_count": 2,
    },
    {"padding": "CIRCULAR", "use_bias": False},
  ],
)
def test_free_layer_has_linen_convs_signature_and_numerics(kwargs):
  ours = hybridconv.linen.KernelConv(6, (3, 5), **kwargs)
  x = jax.random.normal(jax.random.key(1), (2, 9, 11, 4))
  variables = ours.init(jax.random.key(2), x)
  assert set(variables) == {"params"}
  conv = variables["params"]["conv"]
  reference = {"kernel": conv["kernel_source"]["kernel"]}
  if "bias" in conv:
    reference["bias"] = conv["bias"] + 0.5
    variables = {"params": {"conv": {**conv, "bias": reference["bias"]}}}
  expected = linen.Conv(6, (3, 5), **kwargs).apply({"params": reference}, x)
  np.testing.assert_allclose(ours.apply(variables, x), expected, rtol=1e-6, atol=1e-6)


def _train(model, steps=4):
  variables = model.init(jax.random.key(1), IMAGES)
  params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}
  tx = optax.adam(1e-2)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, rest, opt_state):
    def loss_fn(params):
      logits, updates = model.apply({"params": params, **rest}, IMAGES, mutable=["batch_stats"])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, LABELS).mean()
      return loss, updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    new, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, new), {**rest, **updates}, opt_state, loss

  losses, start = [], variables
  for _ in range(steps):
    params, rest, opt_state, loss = step(params, rest, opt_state)
    losses.append(float(loss))
  return start, {"params": params, **rest}, losses


@pytest.mark.slow
def test_gabor_stem_in_a_flax_examples_resnet_trains_with_frozen_kernels_outside_params():
  model = ResNet([1, 1], 4, conv=hybridconv.linen.conv({"conv_init": "gabor"}))
  start, end, losses = _train(model)
  assert losses[-1] < losses[0]
  params = _paths(start["params"])
  assert any("['conv_init']['conv']['kernel_source']['theta']" in p for p in params)
  assert any(
    "['ResNetBlock_1']['conv_proj']['conv']['kernel_source']['kernel']" in p for p in params
  )
  assert not any("sigma" in p for p in params)  # frozen Gabor parameters ...
  assert "FrozenKernel" in start  # ... live in their own collection
  assert _paths(start["FrozenKernel"]) == {
    f"['conv_init']['conv']['kernel_source']['{name}']" for name in ("gamma", "psi", "sigma")
  }
  jax.tree.map(np.testing.assert_array_equal, end["FrozenKernel"], start["FrozenKernel"])

  def theta(variables):  # boxed with its kernel_parameter metadata (nnx.bridge.NNXMeta)
    [value] = jax.tree.leaves(variables["params"]["conv_init"]["conv"]["kernel_source"]["theta"])
    return np.asarray(value)

  assert np.all(theta(end) != theta(start))  # learned


def test_glob_mapping_picks_sources_by_linen_path():
  model = ResNet(
    [1, 1],
    4,
    conv=hybridconv.linen.conv({"*": "random", "conv_init": "gabor", "*/conv_proj": "free"}),
  )
  variables = model.init(jax.random.key(1), IMAGES)
  kernels = {p for p in _paths(variables["params"]) if p.endswith("['kernel_source']['kernel']")}
  assert kernels == {"['ResNetBlock_1']['conv_proj']['conv']['kernel_source']['kernel']"}
  frozen = _paths(variables["FrozenKernel"])
  assert "['ResNetBlock_0']['KernelConv_0']['conv']['kernel_source']['kernel']" in frozen


@pytest.mark.slow
def test_hybrid_resnet_checkpoint_round_trip(tmp_path):
  model = ResNet([1, 1], 4, conv=hybridconv.linen.conv("hybrid"))
  _, variables, _ = _train(model, steps=2)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "variables", variables)
  checkpointer.wait_until_finished()
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, variables)
  restored = checkpointer.restore(tmp_path / "variables", abstract)
  checkpointer.close()
  jax.tree.map(np.testing.assert_array_equal, restored, variables)
  np.testing.assert_array_equal(
    model.apply(restored, IMAGES, train=False), model.apply(variables, IMAGES, train=False)
  )


def test_bad_source_is_one_clear_error():
  with pytest.raises(ValueError, match="unknown kernel source 'sideways'"):
    hybridconv.linen.KernelConv(4, 3, source="sideways").init(
      jax.random.key(0), jnp.zeros((1, 5, 5, 1))
    )
