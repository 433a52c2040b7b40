"""Batch augmentation and normalisation, traced inside jit by both pipelines.

Both pipelines hand a uint8 batch and a per-step key to :func:`prepare_batch`,
so a model sees the same augmentation whether its data came from device memory
or from a grain stream. Augmentation works on the uint8 pixels (cheap to move
and pad) and normalisation comes last.

Random crop pads with **zeros in pixel space** (black, before normalisation),
as torchvision's ``RandomCrop(padding=p)`` does on images: for MNIST and
Fashion-MNIST zero is the background, so a shifted image stays in
distribution; reflect padding would copy object pixels into the border.
Horizontal flips are off unless asked for: they are label-preserving for
clothes and natural images (Fashion-MNIST, CIFAR) but not for digits or
oriented gratings (a flip maps orientation theta to pi - theta).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

_STATS_CHUNK = 8192
# Folded into the root key before the step, so augmentation never shares
# randomness with the epoch permutations (stream 0).
_AUGMENT_STREAM = 1


@dataclasses.dataclass(frozen=True)
class Augment:
  """Which augmentations run on training batches.

  Attributes:
    crop_padding: pad each side by this many zero pixels, then crop back to the
      original size at a random offset (0 = no crop).
    horizontal_flip: flip left-right with probability 1/2.
  """

  crop_padding: int = 0
  horizontal_flip: bool = False

  def __post_init__(self):
    if (
      isinstance(self.crop_padding, bool)
      or int(self.crop_padding) != self.crop_padding
      or (self.crop_padding < 0)
    ):
      raise ValueError(f"data.augment.crop_padding must be an int >= 0, got {self.crop_padding!r}")
    if not isinstance(self.horizontal_flip, bool | np.bool_):
      raise ValueError(f"data.augment.horizontal_flip must be a bool, got {self.horizontal_flip!r}")

  @classmethod
  def from_config(cls, config: Any) -> Augment:
    """From ``data.augment`` (any object with the two attributes) or an ``Augment``."""
    if isinstance(config, Augment):
      return config
    if config is None:
      return cls()
    return cls(crop_padding=config.crop_padding, horizontal_flip=bool(config.horizontal_flip))

  @property
  def enabled(self) -> bool:
    return self.crop_padding > 0 or self.horizontal_flip


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and standard deviation of uint8 images, in [0, 1] units (float32).

  Accumulates sums in float64 chunk by chunk, so a 60k x 28 x 28 set needs no
  float copy of the whole array.
  """
  channels = images.shape[-1]
  total = np.zeros(channels, np.float64)
  total_sq = np.zeros(channels, np.float64)
  for start in range(0, len(images), _STATS_CHUNK):
    chunk = images[start : start + _STATS_CHUNK].reshape(-1, channels).astype(np.float64)
    total += chunk.sum(0)
    total_sq += (chunk * chunk).sum(0)
  count = images.size // channels
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
  # A constant channel would divide by zero; leave it unscaled instead.
  std = np.where(std > 0, std * (1 / 255), 1.0)
  return (mean / 255).astype(np.float32), std.astype(np.float32)


def random_crop(images: Array, key: Array, padding: int) -> Array:
  """Zero-pads ``(B, H, W, C)`` by ``padding`` and crops each image at a random offset."""
  batch, height, width, channels = images.shape
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(key, (batch, 2), 0, 2 * padding + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

  return jax.vmap(crop)(padded, offsets)


def random_flip(images: Array, key: Array) -> Array:
  """Flips each image of ``(B, H, W, C)`` left-right with probability 1/2."""
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1, :], images)


def augment(images: Array, key: Array, config: Augment) -> Array:
  """Applies the enabled augmentations; the dtype (uint8) is kept."""
  crop_key, flip_key = jax.random.split(key)
  if config.crop_padding > 0:
    images = random_crop(images, crop_key, config.crop_padding)
  if config.horizontal_flip:
    images = random_flip(images, flip_key)
  return images


def augment_key(root_key: Array, step: Array | int) -> Array:
  """The augmentation key of training step ``step``, shared by both pipelines."""
  return jax.random.fold_in(jax.random.fold_in(root_key, _AUGMENT_STREAM), step)


def normalise(images: Array, mean: Array, std: Array) -> Array:
  """uint8 pixels to float32 ``(x / 255 - mean) / std`` per channel."""
  return (images.astype(jnp.float32) * (1 / 255) - mean) / std


def prepare_batch(
  images: Array, key: Array | None, mean: Array, std: Array, config: Augment
) -> Array:
  """Augments (when ``key`` is given and something is enabled) and normalises a batch."""
  if key is not None and config.enabled:
    images = augment(images, key, config)
  return normalise(images, mean, std)
