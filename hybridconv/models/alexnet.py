"""AlexNet: the 2012 ImageNet layout, and a small-image variant for 28x28 and 32x32 inputs.

The classic motivation of this project is Krizhevsky et al.'s observation
(2012, fig. 3) that AlexNet's first-layer kernels come out Gabor-like, so the
2012 layout is here as it was, with its 11x11 stride-4 first layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from hybridconv.models.layer_specs import resolve_sources
from hybridconv.nn import conv_layer, max_pool
from hybridconv.nn.layer_rngs import layer_rngs


def local_response_norm(
  x: Array, *, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
) -> Array:
  """AlexNet's local response normalisation across channels (Krizhevsky et al. 2012, sec. 3.3).

  ``b_c = a_c / (k + alpha * sum_{|j - c| <= size // 2} a_j ** 2) ** beta`` over
  the last (channel) axis, with the paper's constants as defaults. Note the
  paper's ``alpha`` multiplies the sum; PyTorch's ``LocalResponseNorm`` divides
  it by ``size`` first.
  """
  squares = jnp.square(x.astype(jnp.float32))
  half = size // 2
  window_sum = jax.lax.reduce_window(
    squares,
    0.0,
    jax.lax.add,
    (1,) * (x.ndim - 1) + (size,),
    (1,) * x.ndim,
    [(0, 0)] * (x.ndim - 1) + [(half, size - 1 - half)],
  )
  return (x / (k + alpha * window_sum) ** beta).astype(x.dtype)


def _scaled(channels: tuple[int, ...], width: float) -> tuple[int, ...]:
  return tuple(max(1, round(c * width)) for c in channels)


def _check_image_shape(image_shape: tuple[int, int, int], minimum: int, model: str) -> None:
  if len(image_shape) != 3 or min(image_shape) < 1:
    raise ValueError(f"{model}: image_shape must be (height, width, channels), got {image_shape}")
  if min(image_shape[:2]) < minimum:
    raise ValueError(
      f"{model} needs images of at least {minimum}x{minimum} pixels, got image_shape={image_shape}"
    )


class AlexNet(nnx.Module):
  """The 2012 AlexNet layout for 224x224 inputs, in one tower, without BatchNorm.

  conv11x11/4(96)-ReLU-pool, conv5x5(256)-ReLU-pool, conv3x3(384)-ReLU,
  conv3x3(384)-ReLU, conv3x3(256)-ReLU-pool, FC(4096)-ReLU-dropout,
  FC(4096)-ReLU-dropout, FC(classes). Pools are the paper's overlapping 3x3
  stride-2 max pools. 62,378,344 parameters at 1000 classes.

  Choices where the paper leaves room or differs from current practice:

  * ``conv1`` pads 2 pixels on each side (as torchvision), so a 224x224 input
    gives 55x55 (the paper's 224 only works with 227 and no padding); the
    other convs keep the size (padding 2, 1, 1, 1), so the last pool gives
    6x6x256 = 9216 features at 224x224.
  * One tower: the paper split conv2, conv4 and conv5 into two groups (one per
    GPU); like torchvision, we do not (hence 62.4M parameters, not 61M).
  * Local response normalisation after the ReLU of conv1 and conv2 is off by
    default (``lrn=False``, as torchvision; later work found it gives
    little); ``lrn=True`` applies :func:`local_response_norm` with the
    paper's constants.
  * Dropout (rate 0.5) on the outputs of the first two FC layers, as the
    Caffe reference model. It draws from the ``dropout`` stream of ``rngs``
    (the default stream when there is none) and is active only in train mode
    (``model.train()``; ``model.eval()`` turns it off).
  * No BatchNorm (the paper had none), so how a kernel source scales its
    kernels matters more here than in the BatchNorm models.

  Other input sizes of at least 63x63 work: the FC input size is computed
  from ``image_shape``.

  Args:
    num_classes: output logits.
    image_shape: (height, width, channels), e.g. (224, 224, 3).
    first_layer, kernels: kernel sources per conv layer, see
      :func:`hybridconv.models.layer_specs.resolve_sources`.
    width: channel multiplier (conv channels and FC widths).
    dtype: compute dtype (e.g. ``jnp.bfloat16``); parameters stay float32.
    lrn: apply local response normalisation after conv1 and conv2.
    rngs: NNX random streams (``params``, and ``dropout`` for dropout masks).
  """

  conv_layer_names = ("conv1", "conv2", "conv3", "conv4", "conv5")

  def __init__(
    self,
    num_classes: int,
    image_shape: tuple[int, int, int],
    *,
    first_layer: Any = "free",
    kernels: Mapping[str, Any] | None = None,
    width: float = 1.0,
    dtype=None,
    lrn: bool = False,
    kernel_seed: int | None = None,
    rngs: nnx.Rngs,
  ):
    _check_image_shape(image_shape, 63, "AlexNet")
    specs = resolve_sources(
      self.conv_layer_names, first_layer=first_layer, kernels=kernels, seed=kernel_seed
    )
    height, width_px, in_channels = image_shape
    c1, c2, c3, c4, c5, hidden = _scaled((96, 256, 384, 384, 256, 4096), width)
    layers = (
      ("conv1", in_channels, c1, 11, 4, 2),
      ("conv2", c1, c2, 5, 1, 2),
      ("conv3", c2, c3, 3, 1, 1),
      ("conv4", c3, c4, 3, 1, 1),
      ("conv5", c4, c5, 3, 1, 1),
    )
    for name, cin, cout, size, stride, pad in layers:
      setattr(
        self,
        name,
        conv_layer(
          cin,
          cout,
          size,
          source=specs[name],
          strides=stride,
          padding=pad,
          dtype=dtype,
          rngs=layer_rngs(rngs, name),
        ),
      )
    self.lrn = lrn
    flat = self._feature_size(height, width_px, c5)
    self.fc6 = nnx.Linear(flat, hidden, dtype=dtype, rngs=layer_rngs(rngs, "fc6"))
    self.dropout6 = nnx.Dropout(0.5, rngs=rngs)
    self.fc7 = nnx.Linear(hidden, hidden, dtype=dtype, rngs=layer_rngs(rngs, "fc7"))
    self.dropout7 = nnx.Dropout(0.5, rngs=rngs)
    self.fc8 = nnx.Linear(hidden, num_classes, dtype=dtype, rngs=layer_rngs(rngs, "fc8"))

  @staticmethod
  def _feature_size(height: int, width: int, channels: int) -> int:
    """Flattened size after conv1 (11x11/4, pad 2) and three 3x3/2 VALID pools."""

    def spatial(n):
      n = (n + 4 - 11) // 4 + 1
      for _ in range(3):
        n = (n - 3) // 2 + 1
      return n

    return spatial(height) * spatial(width) * channels

  @staticmethod
  def _pool(x: Array) -> Array:
    return max_pool(x, (3, 3), strides=(2, 2))

  def __call__(self, x: Array) -> Array:
    x = jax.nn.relu(self.conv1(x))
    x = self._pool(local_response_norm(x) if self.lrn else x)
    x = jax.nn.relu(self.conv2(x))
    x = self._pool(local_response_norm(x) if self.lrn else x)
    x = jax.nn.relu(self.conv3(x))
    x = jax.nn.relu(self.conv4(x))
    x = self._pool(jax.nn.relu(self.conv5(x)))
    x = x.reshape(x.shape[0], -1)
    x = self.dropout6(jax.nn.relu(self.fc6(x)))
    x = self.dropout7(jax.nn.relu(self.fc7(x)))
    return self.fc8(x)


class AlexNetSmall(nnx.Module):
  """AlexNet's five-conv, three-FC shape for small images (28x28, 32x32), with BatchNorm.

  conv5x5(64)-BN-ReLU-pool, conv5x5(192)-BN-ReLU-pool, conv3x3(384)-BN-ReLU,
  conv3x3(256)-BN-ReLU, conv3x3(256)-BN-ReLU-pool, FC(1024)-ReLU-dropout,
  FC(1024)-ReLU-dropout, FC(classes); convs keep the size (SAME), pools are
  2x2 stride 2, so 32x32 gives 4x4x256 features and 28x28 gives 3x3x256.

  Where it comes from: this is not one published network but the common way
  AlexNet is shrunk for CIFAR -- torchvision's AlexNet conv widths (64, 192,
  384, 256, 256); a 5x5 stride-1 first layer instead of 11x11 stride 4 (32
  pixels leave no room for an 11x11/4 layer; cuda-convnet's CIFAR nets also
  start with 5x5); 2x2 pools instead of 3x3/2; 1024-wide FC layers instead
  of 4096. 7,707,594 parameters at 32x32x3 and 10 classes.

  BatchNorm after every conv (absent in 2012; momentum 0.9 and epsilon 1e-5,
  PyTorch's defaults) puts every kernel source on the same footing, as in
  SimpleCNN; the convs therefore have no bias. Dropout 0.5 after the first
  two FC layers, from the ``dropout`` stream of ``rngs``, in train mode only.

  Args: as :class:`AlexNet` (without ``lrn``); inputs of at least 8x8 pixels.
  """

  conv_layer_names = ("conv1", "conv2", "conv3", "conv4", "conv5")

  def __init__(
    self,
    num_classes: int,
    image_shape: tuple[int, int, int],
    *,
    first_layer: Any = "free",
    kernels: Mapping[str, Any] | None = None,
    width: float = 1.0,
    dtype=None,
    kernel_seed: int | None = None,
    rngs: nnx.Rngs,
  ):
    _check_image_shape(image_shape, 8, "AlexNetSmall")
    specs = resolve_sources(
      self.conv_layer_names, first_layer=first_layer, kernels=kernels, seed=kernel_seed
    )
    height, width_px, in_channels = image_shape
    c1, c2, c3, c4, c5, hidden = _scaled((64, 192, 384, 256, 256, 1024), width)
    layers = (
      ("conv1", in_channels, c1, 5),
      ("conv2", c1, c2, 5),
      ("conv3", c2, c3, 3),
      ("conv4", c3, c4, 3),
      ("conv5", c4, c5, 3),
    )
    for index, (name, cin, cout, size) in enumerate(layers, start=1):
      setattr(
        self,
        name,
        conv_layer(
          cin,
          cout,
          size,
          source=specs[name],
          use_bias=False,
          dtype=dtype,
          rngs=layer_rngs(rngs, name),
        ),
      )
      bn_rngs = layer_rngs(rngs, f"bn{index}")
      setattr(
        self,
        f"bn{index}",
        nnx.BatchNorm(cout, momentum=0.9, epsilon=1e-5, dtype=dtype, rngs=bn_rngs),
      )
    flat = (height // 8) * (width_px // 8) * c5
    self.fc6 = nnx.Linear(flat, hidden, dtype=dtype, rngs=layer_rngs(rngs, "fc6"))
    self.dropout6 = nnx.Dropout(0.5, rngs=rngs)
    self.fc7 = nnx.Linear(hidden, hidden, dtype=dtype, rngs=layer_rngs(rngs, "fc7"))
    self.dropout7 = nnx.Dropout(0.5, rngs=rngs)
    self.fc8 = nnx.Linear(hidden, num_classes, dtype=dtype, rngs=layer_rngs(rngs, "fc8"))

  def __call__(self, x: Array) -> Array:
    pool = lambda y: max_pool(y, (2, 2), strides=(2, 2))
    x = pool(jax.nn.relu(self.bn1(self.conv1(x))))
    x = pool(jax.nn.relu(self.bn2(self.conv2(x))))
    x = jax.nn.relu(self.bn3(self.conv3(x)))
    x = jax.nn.relu(self.bn4(self.conv4(x)))
    x = pool(jax.nn.relu(self.bn5(self.conv5(x))))
    x = x.reshape(x.shape[0], -1)
    x = self.dropout6(jax.nn.relu(self.fc6(x)))
    x = self.dropout7(jax.nn.relu(self.fc7(x)))
    return self.fc8(x)
