"""Tests of the FFT filter statistics and the Gabor-likeness summary."""

from __future__ import annotations

import numpy as np
import pytest

from hybridconv.analysis import filter_stats
from hybridconv.kernels.gabor import gabor_envelope, gabor_real

THETAS = np.array([0.1, 0.5, 1.0, 1.6, 2.2, 2.9])
FREQUENCIES = np.array([0.1, 0.15, 0.2, 0.25, 0.3, 0.35])


def _gabors(size=11, sigma=3.0, gamma=1.0):
  return np.asarray(gabor_real(size, THETAS, FREQUENCIES, sigma, gamma, 0.3))


def _orientation_error(fitted, true):
  return np.abs(np.mod(np.asarray(fitted) - true + np.pi / 2, np.pi) - np.pi / 2)


def test_spectral_peak_finds_the_wave_vector():
  peak = filter_stats.spectral_peak(_gabors())
  # Padded to 64 points: frequency bins of 1/64 cycle/pixel.
  assert np.degrees(_orientation_error(peak.theta, THETAS)).max() < 4.0
  np.testing.assert_allclose(peak.frequency, FREQUENCIES, atol=1 / 64)
  assert np.all(peak.peak_fraction > 0.8)


def test_spectral_peak_of_a_vertical_grating():
  # Intensity varies along x (columns): wave vector along x, theta = 0.
  grating = np.cos(2 * np.pi * 0.25 * np.arange(11))[None, :] * np.ones((11, 1))
  peak = filter_stats.spectral_peak(grating)
  assert peak.theta.shape == ()
  assert float(_orientation_error(peak.theta, 0.0)) < 1e-6
  np.testing.assert_allclose(peak.frequency, 0.25, atol=1e-6)


def test_rot90_turns_the_peak_by_a_quarter_turn():
  kernels = _gabors()
  before = filter_stats.spectral_peak(kernels).theta
  after = filter_stats.spectral_peak(np.rot90(kernels, 1, axes=(0, 1))).theta
  assert np.degrees(_orientation_error(after, np.asarray(before) + np.pi / 2)).max() < 1e-3


def test_noise_spreads_its_energy():
  noise = np.random.default_rng(0).standard_normal((11, 11, 64))
  assert np.median(filter_stats.spectral_peak(noise).peak_fraction) < 0.2
  assert np.median(filter_stats.orientation_selectivity(noise)) < 0.25


def test_orientation_energy_bins():
  energy = filter_stats.orientation_energy(_gabors(), num_bins=8)
  assert energy.shape == (8, 6)
  np.testing.assert_allclose(energy.sum(0), 1.0, atol=1e-5)
  np.testing.assert_array_equal(np.argmax(energy, 0), np.round(THETAS / (np.pi / 8)) % 8)


def test_orientation_selectivity_orders_shapes():
  blob = np.asarray(gabor_envelope(11, 0.0, 2.0, 1.0))
  assert float(filter_stats.orientation_selectivity(blob)) < 1e-4
  elongated = float(filter_stats.orientation_selectivity(gabor_real(11, 0.3, 0.2, 2.0, 0.5)))
  round_ = float(filter_stats.orientation_selectivity(gabor_real(11, 0.3, 0.2, 2.0, 1.0)))
  assert 0.8 < round_ < elongated < 1.0


def test_frequency_energy_bands():
  energy = filter_stats.frequency_energy(_gabors())
  assert energy.shape == (5, 6)
  np.testing.assert_allclose(energy.sum(0), 1.0, atol=1e-5)
  # Default octave bands [0, 1/16, 1/8, 1/4, 1/2, 0.75): where each frequency falls.
  expected = np.digitize(FREQUENCIES, [1 / 16, 1 / 8, 1 / 4])
  np.testing.assert_array_equal(np.argmax(energy, 0), expected)


def test_power_spectrum_parseval():
  kernels = np.random.default_rng(1).standard_normal((7, 5, 3))
  power = filter_stats.power_spectrum(kernels, pad=16)
  assert power.shape == (16, 16, 3)
  np.testing.assert_allclose(power.sum((0, 1)), 256 * (kernels**2).sum((0, 1)), rtol=1e-5)


def test_empty_kernels_give_zeros():
  zeros = np.zeros((5, 5, 2))
  peak = filter_stats.spectral_peak(zeros)
  np.testing.assert_array_equal(np.stack(peak), 0.0)
  np.testing.assert_array_equal(filter_stats.orientation_energy(zeros), 0.0)
  np.testing.assert_array_equal(filter_stats.orientation_selectivity(zeros), 0.0)
  # A constant square has non-DC energy once padded (its window's sinc), but a
  # square's 4-fold symmetry cancels the doubled-angle resultant.
  assert float(filter_stats.orientation_selectivity(np.ones((5, 5)))) < 1e-3


def test_gabor_likeness_summary():
  summary = filter_stats.gabor_likeness(np.array([0.1, 0.4, 0.6, 0.9]), thresholds=(0.5, 0.8))
  assert summary == pytest.approx(
    {
      "r2_mean": 0.5,
      "r2_median": 0.5,
      "r2_q25": 0.325,
      "r2_q75": 0.675,
      "frac_r2_above_0.5": 0.5,
      "frac_r2_above_0.8": 0.25,
    }
  )


@pytest.mark.parametrize(
  "call, match",
  [
    (lambda: filter_stats.spectral_peak(np.zeros(5)), "shape"),
    (lambda: filter_stats.spectral_peak(np.zeros((1, 5, 2))), "2x2"),
    (lambda: filter_stats.spectral_peak(np.zeros((5, 5), complex)), "real"),
    (lambda: filter_stats.power_spectrum(np.zeros((9, 9)), pad=8), "pad"),
    (lambda: filter_stats.orientation_energy(np.zeros((5, 5)), num_bins=0), "num_bins"),
    (lambda: filter_stats.frequency_energy(np.zeros((5, 5)), edges=(0.2, 0.1)), "edges"),
    (lambda: filter_stats.gabor_likeness(np.array([])), "empty"),
    (lambda: filter_stats.gabor_likeness(np.array([0.5, np.nan])), "finite"),
  ],
)
def test_bad_input_is_refused(call, match):
  with pytest.raises(ValueError, match=match):
    call()
