"""Maps from unconstrained raw parameters to valid Gabor parameter ranges.

An optimiser updates raw values anywhere on the real line; these maps send
them into ranges where a kernel is always finite, un-aliased and
non-degenerate:

* frequency in ``[f_min, f_max]`` with ``f_max < 0.5`` (Nyquist),
* sigma in ``[sigma_min, sigma_max]`` (a floor of half a pixel by default, so
  the envelope never collapses onto a single sample),
* gamma in ``[gamma_min, gamma_max]``.

Bounded quantities use a *log-space sigmoid*: ``exp(log lo + (log hi - log
lo) * sigmoid(raw))``. Equal raw steps are equal ratios (octaves for
frequency), which keeps learning rates meaningful across scales, and the
sigmoid saturates smoothly, so raw values of +-1e30 still give finite values
and finite (zero) gradients. Orientation and phase are periodic and need no
map: the identity is used, and :func:`wrap_orientation` reports theta modulo pi.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

NYQUIST = 0.5


@dataclasses.dataclass(frozen=True)
class Bounds:
  """Closed interval ``[low, high]`` with ``0 < low < high``."""

  low: float
  high: float

  def __post_init__(self):
    if not (0 < self.low < self.high) or not all(map(math.isfinite, (self.low, self.high))):
      raise ValueError(
        f"bounds must satisfy 0 < low < high < inf, got low={self.low}, high={self.high}"
      )


def frequency_bounds(low: float = 0.02, high: float = 0.45) -> Bounds:
  """Frequency bounds in cycles/pixel; refuses ``high >= 0.5`` (Nyquist)."""
  if high >= NYQUIST:
    raise ValueError(
      f"frequency upper bound {high} is at or above the Nyquist limit {NYQUIST} cycles/pixel; "
      "choose a value below 0.5"
    )
  return Bounds(low, high)


def bounded_log(raw: ArrayLike, bounds: Bounds) -> Array:
  """Raw real -> value in ``[bounds.low, bounds.high]``, uniform in log space."""
  log_low, log_high = math.log(bounds.low), math.log(bounds.high)
  value = jnp.exp(log_low + (log_high - log_low) * jax.nn.sigmoid(raw))
  # float32 rounding of exp(log(bound)) can land one ulp outside the bounds
  # when the sigmoid saturates; the clip only acts there, where the gradient
  # is already zero.
  return jnp.clip(value, bounds.low, bounds.high)


def bounded_log_inverse(value: ArrayLike, bounds: Bounds) -> Array:
  """Inverse of :func:`bounded_log`; values are clipped just inside the bounds."""
  log_low, log_high = math.log(bounds.low), math.log(bounds.high)
  fraction = (jnp.log(jnp.asarray(value, jnp.float32)) - log_low) / (log_high - log_low)
  fraction = jnp.clip(fraction, 1e-6, 1 - 1e-6)
  return jnp.log(fraction) - jnp.log1p(-fraction)


def wrap_orientation(theta: ArrayLike) -> Array:
  """Orientation modulo pi, in ``[0, pi)`` (the real Gabor's period for psi in {0, pi})."""
  return jnp.mod(theta, jnp.pi)


def wrap_phase(psi: ArrayLike) -> Array:
  """Phase modulo 2 pi, in ``[-pi, pi)``."""
  return jnp.mod(jnp.asarray(psi) + jnp.pi, 2 * jnp.pi) - jnp.pi
