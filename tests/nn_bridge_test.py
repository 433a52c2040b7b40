"""The Linen example of docs/layers.md: a hybridconv layer inside a Linen model via nnx.bridge."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx

from hybridconv.nn import KernelConv, sources


# --- docs/layers.md example (keep in sync with docs/layers.md "Using the layers from Linen") ---
class LinenClassifier(linen.Module):
  num_classes: int = 10

  @linen.compact
  def __call__(self, x):
    x = nnx.bridge.to_linen(
      KernelConv,
      x.shape[-1],
      16,
      5,
      source=sources.Hybrid(
        ((sources.Gabor(), 8), (sources.Fixed("sobel_x"), 1), (sources.Free(), 7))
      ),
    )(x)
    x = linen.relu(x).mean(axis=(1, 2))
    return linen.Dense(self.num_classes)(x)


# --- end of docs/layers.md example ---


@pytest.mark.slow
def test_nnx_layer_trains_inside_a_linen_model():
  model = LinenClassifier()
  x = jax.random.normal(jax.random.key(0), (4, 12, 12, 3))
  labels = jnp.arange(4) % 10
  variables = model.init(jax.random.key(1), x)
  assert set(variables) >= {"params"}
  frozen = {k: v for k, v in variables.items() if k != "params"}
  assert frozen, "fixed kernels live in their own (non-params) collection"

  def loss_fn(params):
    logits = model.apply({"params": params, **frozen}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  tx = optax.sgd(0.1)
  params = variables["params"]
  opt_state = tx.init(params)
  grads = jax.grad(loss_fn)(params)
  updates, _ = tx.update(grads, opt_state)
  new_params = optax.apply_updates(params, updates)
  conv_params = jax.tree_util.tree_leaves_with_path(params)
  theta = [v for p, v in conv_params if "theta" in jax.tree_util.keystr(p)]
  assert theta and all(
    np.any(g != 0)
    for p, g in jax.tree_util.tree_leaves_with_path(grads)
    if "theta" in jax.tree_util.keystr(p)
  )
  assert loss_fn(new_params) < loss_fn(params)
