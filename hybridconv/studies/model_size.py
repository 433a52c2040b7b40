"""How many parameters each arm of a study has, from a run's saved config.

A fair comparison of first layers states what each arm learns: a fixed bank
learns nothing in its first layer, a parametric Gabor layer two numbers per
filter, a free layer every weight. The model is built abstractly
(``nnx.eval_shape``: no memory, no computation) from ``config.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from hybridconv import data, models
from hybridconv.nn import conv_layers
from hybridconv.nn.kernel_modules import FrozenKernel


def _size(tree) -> int:
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)))


def parameter_counts(config: Mapping[str, Any]) -> dict[str, int] | None:
  """Learned parameters of the whole model and of its first conv layer, and its frozen weights.

  Returns ``{'learned', 'first_layer_learned', 'first_layer_frozen'}`` or None
  when the input shape cannot be known from the config.
  """
  shape = data.known_input_shape(config.get("data", {}))
  if shape is None:
    return None
  image_shape, num_classes = shape
  model_config = ml_collections.ConfigDict(dict(config["model"]))

  def build():
    return models.build_model(
      model_config,
      num_classes=num_classes,
      image_shape=image_shape,
      rngs=nnx.Rngs(0),
      seed=int(config.get("seed", 0)),
    )

  model = nnx.eval_shape(build)
  first = next(iter(conv_layers(model).values()))
  return {
    "learned": _size(nnx.state(model, nnx.Param)),
    "first_layer_learned": _size(nnx.state(first, nnx.Param)),
    "first_layer_frozen": _size(nnx.state(first, FrozenKernel)),
  }
