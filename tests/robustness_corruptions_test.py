"""Corruptions against closed forms and scipy, and suite validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from hybridconv.robustness import corruptions, suites


def _images(seed=0, shape=(3, 12, 10, 2)):
  return jnp.asarray(np.random.default_rng(seed).uniform(0, 1, size=shape), jnp.float32)


def test_level_zero_is_the_identity_bit_for_bit():
  images = _images()
  key = jax.random.key(0)
  np.testing.assert_array_equal(corruptions.gaussian_noise(images, 0.0, key), images)
  np.testing.assert_array_equal(corruptions.gaussian_blur(images, 0.0, radius=6), images)


def test_noise_has_the_requested_standard_deviation_and_is_clipped():
  images = jnp.full((8, 32, 32, 1), 0.5, jnp.float32)
  noisy = corruptions.gaussian_noise(images, 0.1, jax.random.key(1))
  deviation = np.asarray(noisy - images)
  assert abs(deviation.mean()) < 0.005 and abs(deviation.std() - 0.1) < 0.005
  strong = corruptions.gaussian_noise(images, 2.0, jax.random.key(1))
  assert float(strong.min()) == 0.0 and float(strong.max()) == 1.0


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_blur_matches_scipy_gaussian_filter_with_nearest_borders(sigma):
  images = _images(1)
  radius = corruptions.blur_radius(sigma)
  ours = np.asarray(corruptions.gaussian_blur(images, sigma, radius=radius))
  # scipy's kernel reaches int(truncate * sigma + 0.5) pixels: the same radius here.
  expected = ndimage.gaussian_filter(
    np.asarray(images, np.float64),
    sigma=(0, sigma, sigma, 0),
    mode="nearest",
    truncate=radius / sigma,
  )
  np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_blur_with_a_wider_kernel_than_needed_changes_little():
  images = _images(2)
  exact = corruptions.gaussian_blur(images, 0.5, radius=corruptions.blur_radius(0.5))
  shared = corruptions.gaussian_blur(images, 0.5, radius=corruptions.blur_radius(2.0))
  np.testing.assert_allclose(exact, shared, atol=1e-3)


def test_contrast_scales_deviation_from_each_image_and_channel_mean():
  images = 0.4 + 0.2 * _images(3)  # in [0.4, 0.6]: no clipping at factor 0.3
  out = np.asarray(corruptions.contrast(images, 0.3))
  mean = np.asarray(images).mean(axis=(1, 2), keepdims=True)
  np.testing.assert_allclose(out.mean(axis=(1, 2), keepdims=True), mean, atol=1e-6)
  np.testing.assert_allclose(out - mean, 0.3 * (np.asarray(images) - mean), atol=1e-6)
  np.testing.assert_allclose(corruptions.contrast(images, 1.0), images, atol=1e-6)


def test_suite_checks_names_and_eps():
  suite = suites.get_suite("default")
  assert suite.levels[suites.PGD] == tuple(n / 255 for n in (1, 2, 4, 8))
  assert set(suite.only(["fgsm"]).levels) == {"clean", "fgsm"}
  assert suite.with_eps([0.0, 0.5]).levels[suites.FGSM] == (0.0, 0.5)
  with pytest.raises(ValueError, match="unknown suite 'big'; suites: default"):
    suites.get_suite("big")
  with pytest.raises(ValueError, match="unknown corruption 'fog'"):
    suite.only(["fog"])
  with pytest.raises(ValueError, match=r"eps=1.5 is outside \[0, 1\]"):
    suite.with_eps([0.1, 1.5])
  with pytest.raises(ValueError, match=r"eps=-0.1 is outside"):
    suites.Suite("x", {suites.PGD: (-0.1,)})
  assert suites.parse_levels("0, 8/255,0.5") == (0.0, 8 / 255, 0.5)
  with pytest.raises(ValueError, match="--eps='a'"):
    suites.parse_levels("a")


def test_a_family_is_one_function_and_one_registration(monkeypatch):
  from hybridconv.robustness import evaluate  # noqa: PLC0415

  monkeypatch.setattr(suites, "REGISTRY", dict(suites.REGISTRY))
  invert = suites.Family("invert", "inversion", "none", False, lambda s: lambda x, level, k: 1 - x)
  suites.register(invert)  # the registry is all a suite, evaluation and the reports read
  suite = suites.Suite("mine", {"clean": (0.0,), "invert": (1.0,)})
  per_batch = evaluate._family_fn("invert", suite, fns=None)
  assert per_batch.keywords["corrupt"](jnp.zeros((1, 2, 2, 1)), 1.0, None).min() == 1.0
  with pytest.raises(ValueError, match="registered twice"):
    suites.register(suites.Family("invert", "again", "", False, lambda s: None))
