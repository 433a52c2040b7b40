"""Frozen random kernels: He-normal draws, reproducible from a seed.

Random kernels that are never trained (as in "Training BatchNorm and only
BatchNorm", Frankle et al. 2021) must have the scale a trained network
expects, or the activations vanish or explode with depth. He et al. (2015)
normal initialisation keeps the activation variance constant through ReLU
layers: each weight is drawn from ``N(0, 2 / fan_in)``, ``fan_in = kh * kw *
cin``. The draws are untruncated normals (Flax's ``he_normal`` truncates and
rescales; the variance is the same).

JAX's threefry generator gives the same numbers on every backend, so a seed
fixes the kernel on CPU and accelerators alike (for a given JAX version).
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
from jax import Array

from hybridconv.kernels.gabor import kernel_size_2d
from hybridconv.kernels.options import check_int


def as_key(seed_or_key) -> Array:
  """A JAX PRNG key from a non-negative int seed, a typed key or a raw uint32[2] key."""
  if isinstance(seed_or_key, numbers.Integral) and not isinstance(seed_or_key, bool):
    if seed_or_key < 0:
      raise ValueError(f"seed must be a non-negative integer, got {seed_or_key}")
    return jax.random.key(int(seed_or_key))
  dtype = getattr(seed_or_key, "dtype", None)
  shape = getattr(seed_or_key, "shape", None)
  if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
    return seed_or_key
  if dtype == jnp.uint32 and shape == (2,):
    return seed_or_key
  raise ValueError(
    "expected a seed (non-negative int) or a single PRNG key (jax.random.key(...) or a raw "
    f"uint32[2] key), got {seed_or_key!r}"
  )


def _he_normal(key: Array, shape: tuple[int, ...], fan_in: int) -> Array:
  """``N(0, 2 / fan_in)`` draws of ``shape``, float32."""
  return jax.random.normal(key, shape, jnp.float32) * math.sqrt(2.0 / fan_in)


def random_he_kernel(seed_or_key, shape_hwio) -> Array:
  """A full HWIO conv kernel of He-normal draws, for frozen random layers.

  Args:
    seed_or_key: non-negative int seed or a JAX PRNG key.
    shape_hwio: ``(kh, kw, cin, cout)``.

  Returns:
    float32 array of ``shape_hwio`` with standard deviation
    ``sqrt(2 / (kh * kw * cin))``; the same seed gives the same kernel.
  """
  if not isinstance(shape_hwio, tuple | list) or len(shape_hwio) != 4:
    raise ValueError(f"shape_hwio must be (kh, kw, cin, cout), got {shape_hwio!r}")
  shape = tuple(check_int(f"shape_hwio[{i}]", s, minimum=1) for i, s in enumerate(shape_hwio))
  kh, kw, cin, _ = shape
  return _he_normal(as_key(seed_or_key), shape, kh * kw * cin)


def random_bank(kernel_size, *, num: int = 16, seed: int = 0, fan_in: int | None = None) -> Array:
  """``num`` random spatial filters with He-normal scale, reproducible from ``seed``.

  Args:
    kernel_size: ``k`` or ``(kh, kw)``.
    num: number of filters.
    seed: non-negative integer seed.
    fan_in: fan-in that sets the scale ``sqrt(2 / fan_in)``; ``None`` means
      ``kh * kw`` (one input channel). Pass ``kh * kw * cin`` when the filters
      will be used across ``cin`` input channels.

  Returns:
    float32 ``(kh, kw, num)``. With the default ``fan_in`` it equals
    ``random_he_kernel(seed, (kh, kw, 1, num))[:, :, 0, :]``.
  """
  kh, kw = kernel_size_2d(kernel_size)
  num = check_int("num", num, minimum=1)
  seed = check_int("seed", seed, minimum=0)
  fan_in = kh * kw if fan_in is None else check_int("fan_in", fan_in, minimum=1)
  return _he_normal(as_key(seed), (kh, kw, num), fan_in)
