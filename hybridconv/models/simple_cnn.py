"""SimpleCNN: a small two-conv network for 28x28 inputs (MNIST, Fashion-MNIST)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
from flax import nnx
from jax import Array

from hybridconv.models.layer_specs import resolve_sources
from hybridconv.nn import conv_layer, max_pool
from hybridconv.nn.layer_rngs import layer_rngs


class SimpleCNN(nnx.Module):
  """convKxK(32)-BN-ReLU-pool (K = 5 unless set), conv5x5(64)-BN-ReLU-pool, FC(128), FC(classes).

  BatchNorm after each conv puts every kernel source on the same footing: the
  layer's output scale no longer depends on how its kernels are normalised.

  Args:
    num_classes: output logits.
    image_shape: (height, width, channels) of the inputs, e.g. (28, 28, 1).
    first_layer, kernels: kernel sources per conv layer, see
      :func:`hybridconv.models.layer_specs.resolve_sources`.
    width: channel multiplier.
    first_kernel_size: side of the first conv's kernels (5 in the original
      layout; 7 or more lets a Gabor-likeness score tell filters from noise).
    kernel_seed: the run's seed; random kernel sources without a seed of
      their own draw from it (see :func:`resolve_sources`).
    dtype: compute dtype (e.g. ``jnp.bfloat16``); parameters stay float32.
    rngs: NNX random streams.
  """

  conv_layer_names = ("conv1", "conv2")

  def __init__(
    self,
    num_classes: int,
    image_shape: tuple[int, int, int],
    *,
    first_layer: Any = "free",
    kernels: Mapping[str, Any] | None = None,
    width: float = 1.0,
    first_kernel_size: int = 5,
    dtype=None,
    kernel_seed: int | None = None,
    rngs: nnx.Rngs,
  ):
    specs = resolve_sources(
      self.conv_layer_names, first_layer=first_layer, kernels=kernels, seed=kernel_seed
    )
    height, width_px, in_channels = image_shape
    c1, c2, hidden = (max(1, round(c * width)) for c in (32, 64, 128))
    # (a kernel larger than the images is refused, with the config keys named, by the
    # training run's model check, for every conv alike)
    if (
      isinstance(first_kernel_size, bool)
      or not isinstance(first_kernel_size, int)
      or first_kernel_size < 1
    ):
      raise ValueError(f"model.first_kernel_size={first_kernel_size!r} must be an int >= 1")
    # Each layer draws from streams of its own (paired arms: see hybridconv.nn.layer_rngs).
    self.conv1 = conv_layer(
      in_channels,
      c1,
      first_kernel_size,
      source=specs["conv1"],
      dtype=dtype,
      rngs=layer_rngs(rngs, "conv1"),
    )
    self.bn1 = nnx.BatchNorm(c1, dtype=dtype, rngs=layer_rngs(rngs, "bn1"))
    self.conv2 = conv_layer(
      c1, c2, 5, source=specs["conv2"], dtype=dtype, rngs=layer_rngs(rngs, "conv2")
    )
    self.bn2 = nnx.BatchNorm(c2, dtype=dtype, rngs=layer_rngs(rngs, "bn2"))
    flat = (height // 4) * (width_px // 4) * c2
    self.fc1 = nnx.Linear(flat, hidden, dtype=dtype, rngs=layer_rngs(rngs, "fc1"))
    self.fc2 = nnx.Linear(hidden, num_classes, dtype=dtype, rngs=layer_rngs(rngs, "fc2"))

  def __call__(self, x: Array) -> Array:
    x = max_pool(jax.nn.relu(self.bn1(self.conv1(x))), (2, 2), (2, 2))
    x = max_pool(jax.nn.relu(self.bn2(self.conv2(x))), (2, 2), (2, 2))
    x = x.reshape(x.shape[0], -1)
    return self.fc2(jax.nn.relu(self.fc1(x)))
