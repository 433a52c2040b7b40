"""Tests of the Gabor parameter initialisers."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from skimage.filters._gabor import _sigma_prefactor

from hybridconv.kernels.init import (
  evenly_spaced_orientations,
  grid_init,
  octave_frequencies,
  random_init,
  sigma_from_bandwidth,
)

FIELDS = ("theta", "frequency", "sigma", "gamma", "psi")


@pytest.mark.parametrize("n", [1, 3, 8])
def test_orientations_evenly_spaced_in_half_turn(n):
  theta = np.asarray(evenly_spaced_orientations(n))
  assert theta.shape == (n,) and theta[0] == 0 and theta[-1] < math.pi
  np.testing.assert_allclose(np.diff(theta), math.pi / n, rtol=1e-6)
  # Adding the next step would close the half turn.
  assert theta[-1] + math.pi / n == pytest.approx(math.pi, rel=1e-6)


def test_octave_frequencies():
  f = np.asarray(octave_frequencies(4, highest=0.4))
  np.testing.assert_allclose(f, [0.4, 0.2, 0.1, 0.05], rtol=1e-6)
  half = np.asarray(octave_frequencies(3, highest=0.2, octaves_per_step=0.5))
  np.testing.assert_allclose(half[:-1] / half[1:], math.sqrt(2), rtol=1e-6)


@pytest.mark.parametrize("bandwidth", [0.5, 1.0, 1.5, 3.0])
def test_sigma_from_bandwidth_matches_skimage(bandwidth):
  f = np.array([0.05, 0.1, 0.3])
  np.testing.assert_allclose(
    np.asarray(sigma_from_bandwidth(f, bandwidth)), _sigma_prefactor(bandwidth) / f, rtol=1e-6
  )


def test_one_octave_sigma_closed_form():
  # b = 1: (2 + 1) / (2 - 1) = 3, so sigma = 3 sqrt(ln 2 / 2) / (pi f) ~= 0.562 / f.
  expected = 3 * math.sqrt(math.log(2) / 2) / (math.pi * 0.1)
  assert float(sigma_from_bandwidth(0.1, 1.0)) == pytest.approx(expected, rel=1e-6)
  assert expected == pytest.approx(5.62, abs=0.005)


def test_grid_init_layout():
  p = grid_init(16, num_orientations=8, highest_frequency=0.3, bandwidth=1.0, gamma=0.5, psi=0.2)
  assert set(p) == set(FIELDS) and all(p[k].shape == (16,) for k in FIELDS)
  assert all(p[k].dtype == np.float32 for k in FIELDS)
  theta, f = np.asarray(p["theta"]), np.asarray(p["frequency"])
  np.testing.assert_allclose(theta, np.tile(np.arange(8) * math.pi / 8, 2), rtol=1e-6)
  np.testing.assert_allclose(f, [0.3] * 8 + [0.15] * 8, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(p["sigma"]), _sigma_prefactor(1.0) / f, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(p["gamma"]), 0.5)
  np.testing.assert_allclose(np.asarray(p["psi"]), 0.2)


def test_grid_init_small_and_ragged_banks():
  few = grid_init(3, num_orientations=8)
  np.testing.assert_allclose(np.asarray(few["theta"]), [0, math.pi / 3, 2 * math.pi / 3], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(few["frequency"]), 0.25)
  ragged = grid_init(10, num_orientations=4, highest_frequency=0.2)
  np.testing.assert_allclose(
    np.asarray(ragged["frequency"]), [0.2] * 4 + [0.1] * 4 + [0.05] * 2, rtol=1e-6
  )


def test_random_init_reproducible_and_in_range():
  key = jax.random.key(3)
  a, b = random_init(key, 64), random_init(key, 64)
  c = random_init(jax.random.key(4), 64)
  for k in FIELDS:
    assert a[k].shape == (64,)
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
  for k in ("theta", "frequency", "psi"):
    assert not np.allclose(np.asarray(a[k]), np.asarray(c[k]))
  theta, f, psi = (np.asarray(a[k]) for k in ("theta", "frequency", "psi"))
  assert np.all((theta >= 0) & (theta < math.pi))
  assert np.all((f >= 0.05 * (1 - 1e-6)) & (f <= 0.25 * (1 + 1e-6)))
  assert np.all((psi >= -math.pi) & (psi < math.pi))
  np.testing.assert_allclose(np.asarray(a["sigma"]), _sigma_prefactor(1.0) / f, rtol=1e-5)
  # Log-uniform frequencies: as many below the geometric mean as above (roughly).
  assert 16 < np.sum(f < math.sqrt(0.05 * 0.25)) < 48
  no_phase = random_init(key, 8, random_phase=False)
  np.testing.assert_array_equal(np.asarray(no_phase["psi"]), 0.0)


@pytest.mark.parametrize(
  "call,match",
  [
    (lambda: evenly_spaced_orientations(0), "orientations"),
    (lambda: octave_frequencies(2, highest=0.5), "Nyquist"),
    (lambda: octave_frequencies(2, octaves_per_step=0.0), "octaves_per_step"),
    (lambda: sigma_from_bandwidth(0.1, 0.0), "bandwidth"),
    (lambda: grid_init(0), "number of filters"),
    (lambda: grid_init(8, num_orientations=0), "num_orientations"),
    (lambda: grid_init(8, highest_frequency=0.6), "Nyquist"),
    (lambda: random_init(jax.random.key(0), 4, frequency_range=(0.1, 0.5)), "Nyquist"),
    (lambda: random_init(jax.random.key(0), 4, frequency_range=(0.3, 0.1)), "low <= high"),
    (lambda: random_init(jax.random.key(0), 4, frequency_range=(0.0, 0.1)), "0 < low"),
  ],
)
def test_bad_inputs_raise_value_error(call, match):
  with pytest.raises(ValueError, match=match):
    call()
