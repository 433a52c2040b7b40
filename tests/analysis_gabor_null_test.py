"""Tests of the Gabor-likeness null band (phase-randomised surrogates and their R^2)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from hybridconv.analysis import gabor_fit, gabor_null
from hybridconv.kernels import gabor


def _gabors(n=8, size=7):
  theta = np.linspace(0, np.pi, n, endpoint=False)
  return np.asarray(gabor.gabor_real((size, size), theta, 0.2, 1.5, 1.0, 0.0), np.float32)


def test_surrogates_keep_every_power_spectrum_and_change_the_pattern():
  rng = np.random.default_rng(0)
  kernels = rng.normal(size=(5, 5, 3, 6)).astype(np.float32)
  surrogate = np.asarray(gabor_null.phase_randomized(kernels, jax.random.key(1)))
  assert surrogate.shape == kernels.shape and surrogate.dtype == np.float32
  power = np.abs(np.fft.fft2(kernels, axes=(0, 1))) ** 2
  np.testing.assert_allclose(
    np.abs(np.fft.fft2(surrogate, axes=(0, 1))) ** 2, power, rtol=1e-4, atol=1e-4
  )
  assert np.abs(surrogate - kernels).max() > 0.5  # the spatial arrangement changed
  again = gabor_null.phase_randomized(kernels, jax.random.key(1))
  np.testing.assert_array_equal(np.asarray(again), surrogate)  # a pure function of the key
  other = np.asarray(gabor_null.phase_randomized(kernels, jax.random.key(2)))
  assert np.abs(other - surrogate).max() > 0.1


def test_one_phase_field_per_filter_keeps_colour_filters_separable():
  spatial = _gabors(4, 5)
  colour = np.array([[1.0, -0.5, 0.3], [0.2, 0.9, -1.0], [1, 1, 1], [0.0, 0.0, 2.0]]).T
  kernels = (spatial[:, :, None, :] * colour[None, None]).astype(np.float32)
  surrogate = gabor_null.phase_randomized(kernels, jax.random.key(0))
  _, surrogate_colour, energy = gabor_fit.dominant_component(surrogate)
  np.testing.assert_allclose(np.asarray(energy), 1.0, atol=1e-5)
  unit = colour / np.linalg.norm(colour, axis=0)
  np.testing.assert_allclose(
    np.abs(np.sum(np.asarray(surrogate_colour) * unit, axis=0)), 1.0, atol=1e-4
  )


def test_three_dimensional_input_is_a_stack_of_single_channel_kernels():
  kernels = _gabors(3, 5)
  surrogate = np.asarray(gabor_null.phase_randomized(kernels, jax.random.key(0)))
  assert surrogate.shape == kernels.shape
  np.testing.assert_allclose(
    np.abs(np.fft.fft2(surrogate, axes=(0, 1))),
    np.abs(np.fft.fft2(kernels, axes=(0, 1))),
    rtol=1e-4,
    atol=1e-5,
  )


@pytest.mark.slow
def test_null_scores_of_gabors_fall_well_below_their_own_scores():
  kernels = _gabors(8, 7)[:, :, None, :]
  real = np.asarray(gabor_fit.fit_conv_kernel(kernels).r2_filter)
  null = gabor_null.null_scores(kernels, jax.random.key(0), num_draws=2)
  assert null.shape == (2, 8) and null.dtype == np.float64
  assert np.all(real > 0.99)
  assert np.median(null) < 0.8 and np.all((null >= -1e-6) & (null <= 1 + 1e-6))
  summary = gabor_null.null_summary(null)
  assert summary["null_r2_q25"] <= summary["null_r2_median"] <= summary["null_r2_q75"]
  assert summary["null_r2_median"] == pytest.approx(np.median(null))


@pytest.mark.parametrize("draws", [0, 1.5, True])
def test_bad_draw_counts_and_shapes_are_refused(draws):
  with pytest.raises(ValueError, match="num_draws"):
    gabor_null.null_scores(np.zeros((5, 5, 1, 2), np.float32), jax.random.key(0), draws)
  with pytest.raises(ValueError, match="shape"):
    gabor_null.phase_randomized(np.zeros((5, 5), np.float32), jax.random.key(0))
