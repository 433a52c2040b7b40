"""Image corruptions as pure ``jnp`` functions of ``(images, level, key)``.

Every function takes float images in the [0, 1] pixel range, shape
``(B, H, W, C)``, *before* the model's input normalisation, and returns images
in the same range. ``level`` may be a traced scalar, so one compiled program
serves every level of a family. A level of 0 (noise, blur) returns the input
bit for bit, which the tests rely on to check that a corrupted evaluation
reproduces the clean one.

Why own code: the three corruptions are a few lines each; the one JAX library
that has a Gaussian blur (dm-pix) needs a static kernel size per sigma and
would be a new dependency for ten lines.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import Array

# A blur kernel reaches this many sigmas on each side of its centre.
BLUR_TRUNCATE = 3.0


def gaussian_noise(images: Array, sigma: Array | float, key: Array) -> Array:
  """Adds N(0, sigma^2) noise per pixel and channel, then clips to [0, 1].

  ``sigma`` is in units of the [0, 1] pixel range (0.1 = 25.5 grey levels).
  """
  noise = jax.random.normal(key, images.shape, images.dtype)
  return jnp.clip(images + sigma * noise, 0.0, 1.0)


def blur_radius(max_sigma: float) -> int:
  """Half-width in pixels of the blur kernel that serves every sigma up to ``max_sigma``."""
  return max(1, math.ceil(BLUR_TRUNCATE * max_sigma))


def gaussian_blur(
  images: Array, sigma: Array | float, key: Array | None = None, *, radius: int
) -> Array:
  """Separable Gaussian blur of standard deviation ``sigma`` pixels; sigma 0 is the identity.

  The kernel has the static half-width ``radius`` (:func:`blur_radius` of the
  largest sigma of a suite) whatever ``sigma`` is, so all levels share one
  program; smaller sigmas simply have near-zero outer taps. Borders repeat the
  edge pixel (a zero border would darken the image edges, a second corruption).

  Args:
    images: ``(B, H, W, C)`` in [0, 1].
    sigma: blur width in pixels (>= 0).
    key: unused (the blur is deterministic); present for a uniform signature.
    radius: static kernel half-width in pixels.
  """
  del key
  offsets = jnp.arange(-radius, radius + 1, dtype=images.dtype)
  safe_sigma = jnp.maximum(sigma, 1e-6)
  taps = jnp.exp(-0.5 * (offsets / safe_sigma) ** 2)
  taps = taps / jnp.sum(taps)
  # sigma == 0: an exact delta, so the "blurred" images equal the input bit for bit.
  delta = (offsets == 0).astype(images.dtype)
  taps = jnp.where(sigma > 0, taps, delta)
  padded = jnp.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
  height, width = images.shape[1], images.shape[2]
  # Sums of shifted copies rather than a conv: exact for the delta (0 * x + 1 * x), and
  # cheap for kernels of a dozen taps on small images.
  rows = sum(taps[i] * padded[:, i : i + height] for i in range(2 * radius + 1))
  out = sum(taps[i] * rows[:, :, i : i + width] for i in range(2 * radius + 1))
  return jnp.clip(out, 0.0, 1.0)


def contrast(images: Array, factor: Array | float, key: Array | None = None) -> Array:
  """Scales each image's deviation from its own per-channel mean by ``factor`` (1 = unchanged).

  As ImageNet-C's contrast corruption: ``mean + factor * (x - mean)`` with the
  mean over each image's pixels, per channel.
  """
  del key
  mean = jnp.mean(images, axis=(1, 2), keepdims=True)
  return jnp.clip(mean + factor * (images - mean), 0.0, 1.0)
