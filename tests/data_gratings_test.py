"""Procedural gratings: determinism, and labels checked by an independent FFT estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hybridconv.data import gratings


def _fft_peak(images: np.ndarray, pad: int = 128) -> tuple[np.ndarray, np.ndarray]:
  """Orientation (CCW from x, y up, mod pi) and frequency of each image's spectral peak."""
  pixels = images[..., 0].astype(np.float64)
  pixels -= pixels.mean(axis=(1, 2), keepdims=True)
  power = np.abs(np.fft.fft2(pixels, s=(pad, pad))) ** 2
  flat = power.reshape(len(images), -1).argmax(axis=1)
  rows, cols = np.unravel_index(flat, (pad, pad))
  f_row = np.fft.fftfreq(pad)[rows]
  f_col = np.fft.fftfreq(pad)[cols]
  # Columns run along +x; rows run along -y (y points up), hence the sign.
  theta = np.mod(np.arctan2(-f_row, f_col), math.pi)
  return theta, np.hypot(f_row, f_col)


def test_deterministic_from_seed():
  a = gratings.make_gratings(20, image_size=16, seed=3)
  b = gratings.make_gratings(20, image_size=16, seed=3)
  c = gratings.make_gratings(20, image_size=16, seed=4)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[0], c[0])


def test_dataset_shapes_and_independent_splits():
  ds = gratings.load_gratings_dataset(num_train=64, num_test=32, image_size=12, num_classes=4)
  assert ds.train_images.shape == (64, 12, 12, 1) and ds.train_images.dtype == np.uint8
  assert ds.test_images.shape == (32, 12, 12, 1)
  assert ds.num_classes == 4 and ds.name == "gratings_orientation"
  assert set(np.unique(ds.train_labels)) == {0, 1, 2, 3}
  assert not np.array_equal(ds.train_images[:32], ds.test_images)


def test_orientation_labels_match_fft_orientation():
  num_classes = 6
  images, labels = gratings.make_gratings(
    300,
    image_size=32,
    task="orientation",
    num_classes=num_classes,
    noise=0.0,
    frequency_range=(0.12, 0.35),
    seed=1,
  )
  theta, _ = _fft_peak(images)
  centres = labels * math.pi / num_classes
  error = np.abs(np.mod(theta - centres + math.pi / 2, math.pi) - math.pi / 2)
  # Within half a bin (plus FFT slack) of the class centre, with y pointing up:
  # the sign flip of y would mirror theta to pi - theta and fail this.
  assert np.mean(error < math.pi / num_classes / 2 + 0.05) > 0.97


def test_frequency_labels_match_fft_frequency():
  low, high = 0.08, 0.4
  images, labels = gratings.make_gratings(
    300,
    image_size=32,
    task="frequency",
    num_classes=4,
    noise=0.0,
    frequency_range=(low, high),
    seed=2,
  )
  _, frequency = _fft_peak(images)
  edges = np.exp(np.linspace(math.log(low), math.log(high), 5))
  estimated = np.clip(np.searchsorted(edges, frequency) - 1, 0, 3)
  assert np.mean(estimated == labels) > 0.85
  assert np.all(np.diff([np.median(frequency[labels == k]) for k in range(4)]) > 0)


def test_noise_level_and_envelope():
  clean, _ = gratings.make_gratings(50, image_size=24, noise=0.0, seed=5)
  noisy, _ = gratings.make_gratings(50, image_size=24, noise=0.1, seed=5)
  # Same parameters (drawn before the noise), noise std 0.1 of the range
  # (a little less where clipping at 0 and 255 bites).
  residual = noisy.astype(np.float64) - clean
  assert 0.8 * 25.5 < residual.std() < 1.02 * 25.5
  windowed, _ = gratings.make_gratings(50, image_size=24, noise=0.0, envelope_sigma=2.0, seed=5)
  corners = windowed[:, [0, 0, -1, -1], [0, -1, 0, -1], 0]
  assert np.all(np.abs(corners.astype(int) - 128) <= 1)  # mid-grey outside the window
  assert windowed[:, 10:14, 10:14].std() > 30  # the grating is visible in the centre


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(task="colour"), r"task must be one of \('orientation', 'frequency'\)"),
    (dict(num_classes=1), "num_classes must be an int >= 2"),
    (dict(noise=-0.1), "noise .* must be >= 0"),
    (dict(image_size=2), "image_size must be an int >= 4"),
    (dict(frequency_range=(0.1, 0.6)), r"0 < low < high < 0.5 \(Nyquist\)"),
    (dict(envelope_sigma=-1.0), "envelope_sigma must be >= 0"),
  ],
)
def test_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    gratings.make_gratings(4, **kwargs)
