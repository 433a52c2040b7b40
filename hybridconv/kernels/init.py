"""Initial Gabor parameters: evenly spaced orientations, octave-spaced frequencies.

All functions return *valid* (constrained) parameter values as float32 arrays
of shape ``(n,)``; layers convert them to raw values with the inverse
constraint maps.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
from jax import Array


def _check_count(what: str, n: int) -> None:
  if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
    raise ValueError(f"{what} must be an integer >= 1, got {n!r}")


def _check_frequency_range(low: float, high: float) -> None:
  """Frequencies must satisfy ``0 < low <= high < 0.5`` (below Nyquist)."""
  if not 0 < low <= high < 0.5:
    raise ValueError(
      f"frequencies must satisfy 0 < low <= high < 0.5 cycles/pixel (Nyquist), "
      f"got low={low}, high={high}"
    )


def evenly_spaced_orientations(n: int) -> Array:
  """``n`` orientations ``k * pi / n`` covering ``[0, pi)``."""
  _check_count("number of orientations", n)
  return jnp.arange(n, dtype=jnp.float32) * (jnp.pi / n)


def octave_frequencies(n: int, highest: float = 0.25, octaves_per_step: float = 1.0) -> Array:
  """``n`` frequencies ``highest * 2**(-k * octaves_per_step)``, highest first."""
  _check_count("number of frequencies", n)
  _check_frequency_range(highest, highest)
  if not octaves_per_step > 0:
    raise ValueError(f"octaves_per_step must be positive, got {octaves_per_step}")
  return highest * 2.0 ** (-octaves_per_step * jnp.arange(n, dtype=jnp.float32))


def sigma_from_bandwidth(frequency, bandwidth: float = 1.0) -> Array:
  """Envelope width (pixels) giving a half-magnitude frequency bandwidth in octaves.

  The classic relation (Daugman; also scikit-image's ``gabor_kernel``):
  ``sigma = sqrt(ln 2 / 2) / (pi f) * (2**b + 1) / (2**b - 1)``. One octave gives
  ``sigma ~= 0.56 / f``, roughly one wavelength across two sigmas.
  """
  if bandwidth <= 0:
    raise ValueError(f"bandwidth must be positive (octaves), got {bandwidth}")
  factor = math.sqrt(math.log(2) / 2) / math.pi * (2**bandwidth + 1) / (2**bandwidth - 1)
  return factor / jnp.asarray(frequency, jnp.float32)


def grid_init(
  n: int,
  *,
  num_orientations: int = 8,
  highest_frequency: float = 0.25,
  octaves_per_step: float = 1.0,
  bandwidth: float = 1.0,
  gamma: float = 1.0,
  psi: float = 0.0,
) -> dict[str, Array]:
  """Deterministic bank of ``n`` filters: orientations vary fastest, then octaves.

  Filter ``i`` gets orientation ``i mod num_orientations`` (evenly spaced over
  ``[0, pi)``) and frequency octave ``i // num_orientations``; with fewer than
  ``num_orientations`` filters the orientations are spread over all ``n``.

  Returns:
    dict with float32 arrays ``theta, frequency, sigma, gamma, psi`` of shape ``(n,)``.
  """
  _check_count("number of filters", n)
  _check_count("num_orientations", num_orientations)
  per_scale = min(num_orientations, n)
  num_scales = -(-n // per_scale)
  index = jnp.arange(n)
  theta = evenly_spaced_orientations(per_scale)[index % per_scale]
  frequencies = octave_frequencies(num_scales, highest_frequency, octaves_per_step)
  frequency = frequencies[index // per_scale]
  return {
    "theta": theta,
    "frequency": frequency,
    "sigma": sigma_from_bandwidth(frequency, bandwidth),
    "gamma": jnp.full((n,), gamma, jnp.float32),
    "psi": jnp.full((n,), psi, jnp.float32),
  }


def random_init(
  key: Array,
  n: int,
  *,
  frequency_range: tuple[float, float] = (0.05, 0.25),
  bandwidth: float = 1.0,
  gamma: float = 1.0,
  random_phase: bool = True,
) -> dict[str, Array]:
  """Random bank of ``n`` filters, reproducible from ``key``.

  Orientation uniform on ``[0, pi)``, frequency log-uniform on
  ``frequency_range``, sigma tied to frequency by ``bandwidth`` octaves, phase
  uniform on ``[-pi, pi)`` when ``random_phase`` (else 0).
  """
  _check_count("number of filters", n)
  low, high = frequency_range
  _check_frequency_range(low, high)
  k_theta, k_freq, k_psi = jax.random.split(key, 3)
  theta = jax.random.uniform(k_theta, (n,), minval=0.0, maxval=jnp.pi)
  frequency = jnp.exp(jax.random.uniform(k_freq, (n,), minval=math.log(low), maxval=math.log(high)))
  psi = (
    jax.random.uniform(k_psi, (n,), minval=-jnp.pi, maxval=jnp.pi)
    if random_phase
    else jnp.zeros((n,), jnp.float32)
  )
  return {
    "theta": theta,
    "frequency": frequency,
    "sigma": sigma_from_bandwidth(frequency, bandwidth),
    "gamma": jnp.full((n,), gamma, jnp.float32),
    "psi": psi,
  }
