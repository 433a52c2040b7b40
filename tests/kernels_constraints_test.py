"""Tests of the constraint maps from raw parameters to valid Gabor parameter ranges."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybridconv.kernels.constraints import (
  NYQUIST,
  Bounds,
  bounded_log,
  bounded_log_inverse,
  frequency_bounds,
  wrap_orientation,
  wrap_phase,
)
from hybridconv.kernels.gabor import gabor_real

RAW = jnp.array([-1e30, -100.0, 0.0, 100.0, 1e30], jnp.float32)
BOUNDS = [
  frequency_bounds(),
  Bounds(0.5, 10.0),
  Bounds(0.353, 46.78),
  Bounds(1e-3, 0.45),
  Bounds(0.012, 0.0164),
]


@pytest.mark.parametrize("bounds", BOUNDS, ids=str)
def test_bounded_log_stays_within_bounds_with_finite_gradients(bounds):
  values = np.asarray(bounded_log(RAW, bounds))
  grads = np.asarray(jax.vmap(jax.grad(lambda r: bounded_log(r, bounds)))(RAW))
  assert np.all(np.isfinite(values)) and np.all(np.isfinite(grads))
  # The values are float32: compare with the bounds as float32 numbers.
  assert np.all(values >= np.float32(bounds.low)) and np.all(values <= np.float32(bounds.high))
  assert values[0] == pytest.approx(bounds.low, rel=1e-6)
  assert values[-1] == pytest.approx(bounds.high, rel=1e-6)
  # raw = 0 is the geometric mean; the map is increasing with a positive slope there.
  assert values[2] == pytest.approx(math.sqrt(bounds.low * bounds.high), rel=1e-5)
  assert grads[2] > 0 and np.all(grads[[0, -1]] == 0)


def test_bounded_log_is_increasing_and_uniform_in_log_space():
  bounds = Bounds(0.02, 0.32)  # four octaves
  raw = jnp.linspace(-8, 8, 101)
  values = np.asarray(bounded_log(raw, bounds))
  assert np.all(np.diff(values) > 0)
  # log(value) is an affine function of sigmoid(raw).
  fraction = np.asarray(jax.nn.sigmoid(raw))
  np.testing.assert_allclose(np.log(values), np.log(0.02) + fraction * 4 * np.log(2), atol=1e-5)


@pytest.mark.parametrize("bounds", BOUNDS[:3], ids=str)
def test_inverse_round_trips(bounds):
  values = np.exp(np.linspace(np.log(bounds.low), np.log(bounds.high), 9)[1:-1])
  raw = bounded_log_inverse(values, bounds)
  np.testing.assert_allclose(np.asarray(bounded_log(raw, bounds)), values, rtol=1e-5)
  raw = jnp.linspace(-5, 5, 11)
  np.testing.assert_allclose(
    np.asarray(bounded_log_inverse(bounded_log(raw, bounds), bounds)), np.asarray(raw), atol=2e-3
  )


def test_inverse_clips_values_outside_the_bounds():
  bounds = frequency_bounds()
  raw = np.asarray(bounded_log_inverse(jnp.array([1e-6, 0.02, 0.45, 0.49, 10.0]), bounds))
  assert np.all(np.isfinite(raw))
  back = np.asarray(bounded_log(raw, bounds))
  np.testing.assert_allclose(back, [0.02, 0.02, 0.45, 0.45, 0.45], rtol=1e-4)


def test_frequency_bounds_refuse_nyquist_and_above():
  assert frequency_bounds() == Bounds(0.02, 0.45)
  assert frequency_bounds(0.01, 0.49).high == 0.49
  for high in (NYQUIST, 0.6, 2.0):
    with pytest.raises(ValueError, match="Nyquist"):
      frequency_bounds(0.02, high)


@pytest.mark.parametrize(
  "low,high",
  [
    (0.0, 1.0),
    (-1.0, 1.0),
    (1.0, 1.0),
    (2.0, 1.0),
    (math.nan, 1.0),
    (0.1, math.inf),
    (0.1, math.nan),
  ],
)
def test_bounds_refuse_invalid_intervals(low, high):
  with pytest.raises(ValueError, match="0 < low < high"):
    Bounds(low, high)


def test_wrap_orientation_is_modulo_pi_and_keeps_the_kernel():
  theta = jnp.array([-0.1, 0.0, math.pi, 3.5 * math.pi, 7.0, -10.0])
  wrapped = np.asarray(wrap_orientation(theta))
  assert np.all(wrapped >= 0) and np.all(wrapped < math.pi)
  np.testing.assert_allclose(wrapped[:4], [math.pi - 0.1, 0.0, 0.0, 0.5 * math.pi], atol=1e-5)
  # A real even (psi = 0) Gabor has period pi in theta: the wrapped kernels are the same.
  np.testing.assert_allclose(
    np.asarray(gabor_real(7, theta, 0.2, 2.0)),
    np.asarray(gabor_real(7, wrapped, 0.2, 2.0)),
    atol=2e-5,
  )


def test_wrap_phase_is_modulo_two_pi():
  psi = jnp.array([-math.pi, -3.0, 0.0, 3.0, math.pi, 10.0, -20.0])
  wrapped = np.asarray(wrap_phase(psi))
  assert np.all(wrapped >= -math.pi) and np.all(wrapped < math.pi)
  np.testing.assert_allclose(np.cos(wrapped), np.cos(np.asarray(psi)), atol=1e-5)
  np.testing.assert_allclose(np.sin(wrapped), np.sin(np.asarray(psi)), atol=1e-5)
  np.testing.assert_allclose(wrapped[[2, 3, 4]], [0.0, 3.0, -math.pi], atol=1e-6)
