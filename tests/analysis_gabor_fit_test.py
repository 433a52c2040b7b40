"""Known-answer tests of the Gabor fitter (hybridconv.analysis.gabor_fit).

Batches are kept at <= 16 kernels and sizes few, so that each fit setting
compiles once (fits are cached per size, settings and 16-kernel bucket).
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.filters import gabor_kernel

from hybridconv.analysis import gabor_fit
from hybridconv.kernels.gabor import centred_grid, gabor_real
from hybridconv.kernels.init import sigma_from_bandwidth

SIZE = 11
N = 16


def _random_params(rng, n, size=SIZE):
  """Gabor parameters a first-layer filter of ``size`` pixels can show clearly."""
  frequency = np.exp(rng.uniform(np.log(0.08), np.log(0.3), n))
  sigma = np.asarray(sigma_from_bandwidth(frequency, 1.0)) * rng.uniform(0.8, 1.3, n)
  return dict(
    theta=rng.uniform(0, np.pi, n),
    frequency=frequency,
    sigma=np.clip(sigma, 1.5, size / 3),
    gamma=rng.uniform(0.6, 1.5, n),
    psi=rng.uniform(-np.pi, np.pi, n),
    amplitude=rng.uniform(0.5, 2.0, n),
  )


def _render(params, size=SIZE):
  p = params
  return (
    np.asarray(gabor_real(size, p["theta"], p["frequency"], p["sigma"], p["gamma"], p["psi"]))
    * p["amplitude"]
  )


def _orientation_error(fitted, true):
  """Angular distance modulo pi, in [0, pi/2]."""
  return np.abs(np.mod(np.asarray(fitted) - true + np.pi / 2, np.pi) - np.pi / 2)


def _phase_error(fit, params):
  """Phase error, comparing with -psi where the fit chose the theta + pi branch."""
  turns = np.round((np.asarray(fit.theta) - params["theta"]) / np.pi)
  true_psi = np.where(np.mod(turns, 2) == 1, -params["psi"], params["psi"])
  return np.abs(np.angle(np.exp(1j * (np.asarray(fit.psi) - true_psi))))


@pytest.fixture(scope="module")
def noisy_bank():
  rng = np.random.default_rng(0)
  params = _random_params(rng, N)
  clean = _render(params)
  kernels = clean + 0.05 * params["amplitude"] * rng.standard_normal(clean.shape)
  return params, kernels, gabor_fit.fit_gabor(kernels)


@pytest.mark.slow
def test_noisy_gabors_are_recovered(noisy_bank):
  params, _, fit = noisy_bank
  assert fit.theta.shape == (N,)
  assert np.degrees(_orientation_error(fit.theta, params["theta"])).max() < 3.0
  np.testing.assert_allclose(fit.frequency, params["frequency"], rtol=0.05)
  np.testing.assert_allclose(fit.amplitude, params["amplitude"], rtol=0.1)
  np.testing.assert_allclose(fit.sigma, params["sigma"], rtol=0.2)
  # Phase trades off against a centre shift along the wave vector (only the
  # envelope tells them apart), so it is the least well determined parameter.
  assert _phase_error(fit, params).max() < 0.35
  assert np.abs(fit.centre_x).max() < 0.3 and np.abs(fit.centre_y).max() < 0.3
  assert np.min(fit.r2) > 0.9


@pytest.mark.slow
def test_canonical_ranges(noisy_bank):
  _, _, fit = noisy_bank
  assert np.all((fit.theta >= 0) & (fit.theta < np.pi))
  assert np.all((fit.psi >= -np.pi) & (fit.psi < np.pi))
  assert np.all(fit.amplitude >= 0)
  np.testing.assert_array_equal(fit.offset, 0.0)


def test_white_noise_scores_low():
  noise = np.random.default_rng(1).standard_normal((SIZE, SIZE, N))
  fit = gabor_fit.fit_gabor(noise)
  assert np.median(fit.r2) < 0.4
  assert np.max(fit.r2) < 0.35


@pytest.mark.slow
def test_rot90_rotates_orientation_by_quarter_turn(noisy_bank):
  _, kernels, fit = noisy_bank
  rotated = gabor_fit.fit_gabor(np.rot90(kernels, 1, axes=(0, 1)))
  turned = np.asarray(fit.theta) + np.pi / 2
  assert np.degrees(_orientation_error(rotated.theta, turned)).max() < 0.5
  np.testing.assert_allclose(rotated.r2, fit.r2, atol=1e-3)


@pytest.mark.slow
def test_negating_and_scaling_keep_the_score(noisy_bank):
  _, kernels, fit = noisy_bank
  flipped = gabor_fit.fit_gabor(-1e-3 * kernels)
  np.testing.assert_allclose(flipped.r2, fit.r2, atol=1e-3)
  np.testing.assert_allclose(flipped.amplitude, 1e-3 * np.asarray(fit.amplitude), rtol=1e-3)


def test_off_centre_gabor_is_located():
  rng = np.random.default_rng(2)
  params = _random_params(rng, 4, size=17)
  big = _render(params, size=17)  # centre at pixel (8, 8)
  shifts = [(-2, 1), (1, 2), (2, -2), (0, -1)]  # (rows down, columns right)
  crops = np.stack(
    [big[3 - dr : 3 - dr + SIZE, 3 - dc : 3 - dc + SIZE, i] for i, (dr, dc) in enumerate(shifts)],
    -1,
  )
  fit = gabor_fit.fit_gabor(crops)
  np.testing.assert_allclose(fit.centre_x, [dc for _, dc in shifts], atol=0.2)
  np.testing.assert_allclose(fit.centre_y, [-dr for dr, _ in shifts], atol=0.2)
  assert np.degrees(_orientation_error(fit.theta, params["theta"])).max() < 3.0
  assert np.min(fit.r2) > 0.97


@pytest.mark.slow
def test_exact_gabor_without_centre_matches_gabor_real():
  # Non-square, one side even: the grid is centred between pixels along x.
  size = (9, 12)
  params = _random_params(np.random.default_rng(3), 6, size=9)
  kernels = _render(params, size=size)
  fit = gabor_fit.fit_gabor(kernels, fit_centre=False)
  np.testing.assert_array_equal(fit.centre_x, 0.0)
  assert np.min(fit.r2) > 0.999
  np.testing.assert_allclose(gabor_fit.gabor_from_fit(fit, size), kernels, atol=1e-2)
  assert np.degrees(_orientation_error(fit.theta, params["theta"])).max() < 0.5
  np.testing.assert_allclose(fit.frequency, params["frequency"], rtol=1e-2)
  np.testing.assert_allclose(fit.gamma, params["gamma"], rtol=0.05)


def test_gabor_from_fit_is_gabor_real():
  params = _random_params(np.random.default_rng(4), 3)
  zeros = np.zeros(3)
  fit = gabor_fit.GaborFit(
    params["theta"],
    params["frequency"],
    params["sigma"],
    params["gamma"],
    params["psi"],
    params["amplitude"],
    zeros,
    zeros,
    zeros,
    zeros,
  )
  np.testing.assert_allclose(
    gabor_fit.gabor_from_fit(fit, (9, 8)), _render(params, size=(9, 8)), atol=1e-6
  )


def test_matches_scikit_image_orientation_convention():
  # skimage's y axis points down, so its theta is our -theta; f is the same.
  thetas, frequency = np.array([0.3, 1.2, 2.0, 2.8]), 0.15
  kernels = np.stack(
    [gabor_kernel(frequency, theta=t, sigma_x=1.7, sigma_y=1.7).real for t in thetas], -1
  )
  assert kernels.shape[:2] == (SIZE, SIZE)
  fit = gabor_fit.fit_gabor(kernels)
  assert np.degrees(_orientation_error(fit.theta, -thetas)).max() < 0.5
  np.testing.assert_allclose(fit.frequency, frequency, rtol=0.01)
  np.testing.assert_allclose(fit.sigma, 1.7, rtol=0.02)


@pytest.mark.slow
def test_blobs_and_edges_are_flagged_in_the_layer_summary():
  x, y = (np.asarray(c) for c in centred_grid(SIZE))
  blob = np.exp(-(x**2 + y**2) / 8.0)
  edge = x * blob
  stripes = np.asarray(gabor_real(SIZE, 0.4, 0.2, 2.5))
  kernel = np.stack([blob, edge, stripes, stripes], -1)[:, :, None, :]
  result = gabor_fit.fit_conv_kernel(kernel)
  assert np.min(result.r2_filter) > 0.99  # all are Gabors, two in the f -> 0 limit
  cycles = np.asarray(result.fit.frequency * result.fit.sigma)
  assert np.all(cycles[:2] < 0.2) and np.all(cycles[2:] > 0.4)
  summary = gabor_fit.layer_gabor_summary(kernel)
  assert summary["frac_r2_above_0.5_blob_or_edge"] == 0.5
  # Median of two f -> 0 fits at the 0.02 lower bound and two at 0.2.
  np.testing.assert_allclose(summary["frequency_median"], 0.11, atol=0.005)


def test_theta_stays_below_pi_for_horizontal_wave_vectors():
  # Wave vectors along x fit to theta ~ 0 or ~ pi; float32 rounding must not
  # report pi itself.
  steps = np.where(np.asarray(centred_grid(SIZE)[0]) > 0, 1.0, -1.0)
  kernels = np.stack([steps, -steps, np.asarray(gabor_real(SIZE, 0.0, 0.2, 2.5))], -1)
  fit = gabor_fit.fit_gabor(kernels)
  assert np.all((fit.theta >= 0) & (fit.theta < np.pi))
  assert np.degrees(_orientation_error(fit.theta, 0.0)).max() < 1.0


def test_flat_kernels_score_zero():
  kernels = np.zeros((SIZE, SIZE, 2))
  kernels[..., 1] = 3.0
  fit = gabor_fit.fit_gabor(kernels)
  np.testing.assert_array_equal(fit.r2, 0.0)
  assert np.all(np.isfinite(np.stack(fit)))


def test_colour_filters_dominant_mode():
  rng = np.random.default_rng(6)
  params = _random_params(rng, 5)
  colour = rng.normal(size=(3, 5))
  kernel = _render(params)[:, :, None, :] * colour
  kernel += 0.03 * rng.standard_normal(kernel.shape)
  result = gabor_fit.fit_conv_kernel(kernel, mode="dominant")
  assert result.fit.theta.shape == (5,) and result.colour.shape == (3, 5)
  assert np.degrees(_orientation_error(result.fit.theta, params["theta"])).max() < 3.0
  np.testing.assert_allclose(result.fit.frequency, params["frequency"], rtol=0.05)
  cosine = np.sum(result.colour * colour, 0) / np.linalg.norm(colour, axis=0)
  np.testing.assert_allclose(np.abs(cosine), 1.0, atol=1e-3)
  np.testing.assert_allclose(np.linalg.norm(result.colour, axis=0), 1.0, atol=1e-5)
  assert np.all(result.colour.sum(0) >= 0)
  assert np.min(result.colour_energy) > 0.95
  assert np.min(result.r2_filter) > 0.9


def test_per_channel_mode_shapes_and_scores():
  rng = np.random.default_rng(7)
  params = _random_params(rng, 5)
  kernel = _render(params)[:, :, None, :] * np.array([1.0, -0.5, 2.0])[:, None]
  result = gabor_fit.fit_conv_kernel(kernel, mode="per_channel")
  assert result.fit.r2.shape == (3, 5) and result.colour is None
  assert np.min(result.fit.r2) > 0.99 and np.min(result.r2_filter) > 0.99


@pytest.mark.slow
def test_layer_summary_separates_gabor_from_random_layers():
  rng = np.random.default_rng(8)
  gabors = _render(_random_params(rng, 8))[:, :, None, :] * rng.uniform(0.2, 1.0, (3, 8))
  gabor_summary = gabor_fit.layer_gabor_summary(gabors)
  random_summary = gabor_fit.layer_gabor_summary(rng.standard_normal((SIZE, SIZE, 3, 8)))
  assert gabor_summary["r2_median"] > 0.99 and gabor_summary["frac_r2_above_0.8"] == 1.0
  assert random_summary["r2_median"] < 0.3 and random_summary["frac_r2_above_0.5"] == 0.0
  assert gabor_summary["colour_energy_mean"] > 0.99 > random_summary["colour_energy_mean"]
  assert (
    gabor_summary["spectral_peak_fraction_mean"] > 2 * random_summary["spectral_peak_fraction_mean"]
  )
  assert all(isinstance(v, float) for v in gabor_summary.values())


@pytest.mark.parametrize(
  "kernels, options, match",
  [
    (np.zeros(5), {}, "shape"),
    (np.zeros((SIZE, SIZE, 0)), {}, "no kernels"),
    (np.zeros((3, 3, 2)), {}, "too small"),
    (np.full((SIZE, SIZE, 1), np.nan), {}, "non-finite"),
    (np.zeros((SIZE, SIZE, 1), complex), {}, "real"),
    (np.zeros((SIZE, SIZE, 1)), {"frequencies": (0.1, 0.6)}, "frequencies"),
    (np.zeros((SIZE, SIZE, 1)), {"frequency_range": (0.02, 0.5)}, "Nyquist"),
    (np.zeros((SIZE, SIZE, 1)), {"num_orientations": 0}, "num_orientations"),
    (np.zeros((SIZE, SIZE, 1)), {"steps": 0}, "steps"),
    (np.zeros((SIZE, SIZE, 1)), {"gamma_range": (2.0, 1.0)}, "bounds"),
  ],
)
def test_bad_input_is_refused(kernels, options, match):
  with pytest.raises(ValueError, match=match):
    gabor_fit.fit_gabor(kernels, **options)


def test_bad_conv_input_is_refused():
  with pytest.raises(ValueError, match="mode"):
    gabor_fit.fit_conv_kernel(np.zeros((SIZE, SIZE, 3, 2)), mode="luminance")
  with pytest.raises(ValueError, match=r"\(kh, kw, cin, cout\)"):
    gabor_fit.fit_conv_kernel(np.zeros((SIZE, SIZE, 3)))
