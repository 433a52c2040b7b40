"""Known-answer tests of the fixed kernel banks and their registry."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft
from scipy import ndimage
from scipy.special import erf

from hybridconv.kernels import classic
from hybridconv.kernels.banks import BANKS, bank_options, bank_size, make_bank
from hybridconv.kernels.dct import zigzag_order
from hybridconv.kernels.gabor import centred_grid, gabor_complex, gabor_real
from hybridconv.kernels.gaussian import derivative_orders
from hybridconv.kernels.init import sigma_from_bandwidth
from hybridconv.kernels.random_kernels import random_bank, random_he_kernel


def _options(name):
  return {"array": np.ones((5, 5, 2))} if name == "user" else {}


def _correlate(image, kernel):
  """Cross-correlation as the layers compute it: one lax.conv_general_dilated call, VALID."""
  out = jax.lax.conv_general_dilated(
    jnp.asarray(image, jnp.float32)[None, :, :, None],
    jnp.asarray(kernel, jnp.float32)[:, :, None, None],
    (1, 1),
    "VALID",
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )
  return np.asarray(out[0, :, :, 0])


def _sampled_mass(kernel_size, sigma):
  """Sum of the unit 2-D Gaussian sampled at the pixel centres of a square kernel.

  Per axis: the mass inside the kernel's cells, ``erf(h / (sigma sqrt 2))`` with
  ``h = size / 2``, plus the midpoint rule's leading Euler-Maclaurin error
  ``(f'(-h) - f'(h)) / 24 = h phi(h) / (12 sigma^2)``, which matters once the
  kernel truncates the Gaussian.
  """
  h = kernel_size / 2
  density = math.exp(-(h**2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
  return (erf(h / (sigma * math.sqrt(2))) + h * density / (12 * sigma**2)) ** 2


# ---------------------------------------------------------------- registry


@pytest.mark.parametrize("name", sorted(BANKS))
def test_every_bank_is_finite_float32_and_sized(name):
  bank = make_bank(name, 5, **_options(name))
  assert bank.dtype == jnp.float32 and bank.ndim == 3 and bank.shape[:2] == (5, 5)
  assert np.all(np.isfinite(np.asarray(bank))) and np.any(np.asarray(bank) != 0)
  assert bank_size(name, 5, **_options(name)) == bank.shape[2]
  # Layers may build banks inside jit: the result must not change.
  traced = jax.jit(lambda: make_bank(name, 5, **_options(name)))()
  np.testing.assert_allclose(np.asarray(traced), np.asarray(bank), atol=1e-6)


@pytest.mark.parametrize(
  "name,options,size,count",
  [
    ("gabor", {}, (6, 4), 32),
    ("gabor", {"num_orientations": 4, "num_scales": 3, "phases": 0.0}, 7, 12),
    ("gaussian_derivatives", {"order": 4, "sigmas": [1.0]}, (4, 6), 15),
    ("gaussian_derivatives", {"order": 0, "sigmas": (1.0, 2.0, 3.0)}, 5, 3),
    ("log", {"sigmas": (0.5, 1.0, 2.0)}, 6, 3),
    ("dog", {}, (5, 8), 2),
    ("dct", {}, (3, 4), 12),
    ("dct", {"num": 6}, 8, 6),
    ("classic", {"names": ("sobel_x", "sobel_y")}, 3, 2),
    ("random", {"num": 7, "seed": 3}, (2, 3), 7),
    ("user", {"array": np.zeros((4, 2))}, (4, 2), 1),
    ("box_blur", {}, 4, 1),
  ],
)
def test_bank_shapes(name, options, size, count):
  bank = make_bank(name, size, **options)
  kh, kw = (size, size) if isinstance(size, int) else size
  assert bank.shape == (kh, kw, count)
  assert bank_size(name, size, **options) == count


def test_unknown_bank_lists_the_known_names():
  with pytest.raises(ValueError) as info:
    make_bank("sobel", 3)
  message = str(info.value)
  assert "'sobel'" in message
  for name in (
    "gabor",
    "gaussian_derivatives",
    "log",
    "dog",
    "dct",
    "classic",
    "random",
    "user",
    "sobel_x",
    "emboss",
  ):
    assert name in message
  with pytest.raises(ValueError, match="known banks"):
    bank_size(None, 3)


def test_unknown_option_lists_the_allowed_ones():
  with pytest.raises(ValueError, match=r"\['sigma'\].*'log'.*allowed: \['sigmas'\]"):
    make_bank("log", 5, sigma=1.0)
  with pytest.raises(ValueError, match="allowed: none"):
    make_bank("sobel_x", 3, normalise=True)
  assert bank_options("dog") == {"sigmas": (1.0, 2.0), "ratio": 1.6}
  assert set(bank_options("gabor")) >= {
    "num_orientations",
    "num_scales",
    "highest_frequency",
    "phases",
    "bandwidth",
    "gamma",
    "zero_mean",
  }


@pytest.mark.parametrize(
  "name,options,match",
  [
    ("gabor", {"highest_frequency": 0.5}, "Nyquist"),
    ("gabor", {"highest_frequency": 0.7}, "Nyquist"),
    ("gabor", {"num_orientations": 0}, "num_orientations"),
    ("gabor", {"num_scales": 1.5}, "num_scales"),
    ("gabor", {"phases": ()}, "phases"),
    ("gabor", {"bandwidth": -1.0}, "bandwidth"),
    ("gabor", {"zero_mean": 1}, "zero_mean"),
    ("gaussian_derivatives", {"order": 5}, r"order must be an integer in \[0, 4\]"),
    ("gaussian_derivatives", {"sigmas": (1.0, 0.0)}, r"sigmas\[1\]"),
    ("log", {"sigmas": "1.0"}, "sigmas"),
    ("dog", {"ratio": 1.0}, "ratio must be > 1"),
    ("dog", {"sigmas": math.inf}, "sigmas"),
    ("dct", {"num": 26}, r"num must be an integer in \[1, 25\]"),
    ("classic", {"names": ("sobel_x", "canny")}, "names"),
    ("random", {"num": 0}, "num"),
    ("random", {"seed": -1}, "seed"),
    ("random", {"fan_in": 0}, "fan_in"),
  ],
)
def test_invalid_option_values(name, options, match):
  with pytest.raises(ValueError, match=match):
    make_bank(name, 5, **options)
  with pytest.raises(ValueError, match=match):
    bank_size(name, 5, **options)


# ---------------------------------------------------------------- gabor


def test_gabor_bank_order_and_parameters():
  bank = np.asarray(
    make_bank(
      "gabor",
      7,
      num_orientations=4,
      num_scales=2,
      highest_frequency=0.3,
      phases=(0.0, -math.pi / 2),
      gamma=0.7,
    )
  )
  assert bank.shape == (7, 7, 16)
  for s in range(2):
    for o in range(4):
      for p, psi in enumerate((0.0, -math.pi / 2)):
        f = 0.3 / 2**s
        expected = gabor_real(
          7, o * math.pi / 4, f, sigma_from_bandwidth(f, 1.0), 0.7, psi, zero_mean=True
        )
        np.testing.assert_allclose(bank[:, :, (s * 4 + o) * 2 + p], np.asarray(expected), atol=1e-6)


def test_gabor_bank_quadrature_neighbours_zero_mean_and_norm():
  bank = np.asarray(make_bank("gabor", 9, num_orientations=3, num_scales=1, highest_frequency=0.2))
  np.testing.assert_allclose(bank.sum(axis=(0, 1)), 0.0, atol=1e-5)
  f = 0.2
  complex_kernel = np.asarray(
    gabor_complex(9, math.pi / 3, f, sigma_from_bandwidth(f), 1.0, 0.0, zero_mean=True)
  )
  np.testing.assert_allclose(bank[:, :, 2], complex_kernel.real, atol=1e-6)
  np.testing.assert_allclose(bank[:, :, 3], complex_kernel.imag, atol=1e-6)
  unit = np.asarray(make_bank("gabor", 9, unit_norm=True, zero_mean=False))
  np.testing.assert_allclose(np.linalg.norm(unit, axis=(0, 1)), 1.0, atol=1e-5)
  assert abs(unit.sum(axis=(0, 1))).max() > 0.01  # without zero_mean the DC stays


# ---------------------------------------------------------------- Gaussian family


@pytest.mark.parametrize("size,sigma", [(15, 1.0), (25, 2.0), (5, 2.0), (6, 1.5), (4, 1.0)])
def test_gaussian_order_zero_sums_to_the_mass_inside_the_kernel(size, sigma):
  total = float(np.asarray(make_bank("gaussian_derivatives", size, order=0, sigmas=sigma)).sum())
  assert total == pytest.approx(_sampled_mass(size, sigma), abs=1e-3)
  assert total < 0.99 or size >= 12 * sigma  # the small kernels do truncate
  if size >= 12 * sigma:
    assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("size", [7, 8])
def test_gaussian_derivative_symmetries_and_signs(size):
  bank = np.asarray(make_bank("gaussian_derivatives", size, order=4, sigmas=(1.3,)))
  for k, (i, j) in enumerate(derivative_orders(4)):
    kernel = bank[:, :, k]
    np.testing.assert_allclose(kernel[:, ::-1], (-1) ** i * kernel, atol=1e-7)  # x -> -x
    np.testing.assert_allclose(kernel[::-1], (-1) ** j * kernel, atol=1e-7)  # y -> -y
  d_dx, d_dy = bank[:, :, 1], bank[:, :, 2]
  half = size // 2
  assert np.all(d_dx[:, -half:] > 0) and np.all(d_dx[:, :half] < 0)  # positive on the right
  assert np.all(d_dy[:half] > 0) and np.all(d_dy[-half:] < 0)  # positive above (y up)


@pytest.mark.parametrize("sigma", [1.0, 1.5])
def test_gaussian_derivatives_measure_derivatives_of_monomials(sigma):
  # Correlating k_ij with x^i y^j gives d^i/dx^i d^j/dy^j (G * x^i y^j) = i! j!.
  # Sampling at sigma = 1 aliases slightly (about 3e-4 at order 4); 1.5 does not.
  bank = np.asarray(make_bank("gaussian_derivatives", 21, order=4, sigmas=sigma), np.float64)
  x, y = (np.asarray(a, np.float64) for a in centred_grid(21))
  for k, (i, j) in enumerate(derivative_orders(4)):
    response = np.sum(bank[:, :, k] * x**i * y**j)
    expected = math.factorial(i) * math.factorial(j)
    assert response == pytest.approx(expected, rel=1e-3 if sigma == 1.0 else 1e-5)
  # Through the layers' conv op: d/dx of a ramp rising rightwards is its slope.
  ramp = np.tile(0.5 * np.arange(25.0), (25, 1))
  np.testing.assert_allclose(_correlate(ramp, bank[:, :, 1]), 0.5, rtol=1e-4)


@pytest.mark.parametrize("size,sigma", [(9, 1.5), (7, 1.0)])
def test_gaussian_derivatives_match_scipy_gaussian_filter(size, sigma):
  # scipy convolves with derivatives of a discretely normalised Gaussian along
  # [row, column] (row = -y); divide ours by our order-0 sum to compare.
  ours = np.asarray(make_bank("gaussian_derivatives", size, order=3, sigmas=sigma), np.float64)
  ours = ours / ours[:, :, 0].sum()
  impulse = np.zeros((size, size))
  impulse[size // 2, size // 2] = 1.0
  for k, (i, j) in enumerate(derivative_orders(3)):
    reference = ndimage.gaussian_filter(
      impulse, sigma, order=(j, i), mode="constant", radius=size // 2
    )
    np.testing.assert_allclose(ours[:, :, k], (-1) ** i * reference, atol=1e-6)


@pytest.mark.parametrize("size,sigma", [(9, 1.0), (9, 2.0), (7, 1.5), (15, 2.0), (25, 2.0)])
def test_log_sum_is_minus_the_truncated_surround(size, sigma):
  log = np.asarray(make_bank("log", size, sigmas=sigma), np.float64)[:, :, 0]

  # Outside a disc of radius r the Laplacian of Gaussian integrates to
  # (r^2 / sigma^4) exp(-r^2 / (2 sigma^2)); the kernel's square lies between
  # the discs of radius h and h sqrt(2), h = size / 2.
  def tail(r):
    return r**2 / sigma**4 * math.exp(-(r**2) / (2 * sigma**2))

  h = size / 2
  assert -tail(h) - 1e-6 <= log.sum() <= -tail(h * math.sqrt(2)) + 1e-6
  assert log[size // 2, size // 2] == pytest.approx(-1 / (math.pi * sigma**4), rel=1e-6)


def test_log_is_the_sum_of_second_derivatives_and_matches_scipy():
  derivs = np.asarray(make_bank("gaussian_derivatives", 9, order=2, sigmas=1.2))
  log = np.asarray(make_bank("log", 9, sigmas=1.2))[:, :, 0]
  np.testing.assert_allclose(log, derivs[:, :, 3] + derivs[:, :, 5], atol=1e-7)
  impulse = np.zeros((9, 9))
  impulse[4, 4] = 1.0
  reference = ndimage.gaussian_laplace(impulse, 1.2, mode="constant", radius=4)
  np.testing.assert_allclose(log / derivs[:, :, 0].sum(), reference, atol=1e-6)


def test_dog_values_sum_and_log_limit():
  dog = np.asarray(make_bank("dog", 7, sigmas=(1.0, 2.0), ratio=1.6), np.float64)
  x, y = 2.0, -1.0  # pixel [row 4, column 5]
  g = lambda s: math.exp(-(x**2 + y**2) / (2 * s**2)) / (2 * math.pi * s**2)
  assert dog[4, 5, 1] == pytest.approx(g(2.0) - g(3.2), rel=1e-6)
  assert dog[3, 3, 0] > 0 and dog[0, 3, 0] < 0  # on-centre, off-surround
  for size, sigma in [(7, 1.0), (31, 1.5)]:
    total = np.asarray(make_bank("dog", size, sigmas=sigma, ratio=1.6)).sum()
    expected = _sampled_mass(size, sigma) - _sampled_mass(size, 1.6 * sigma)
    assert total == pytest.approx(expected, abs=1e-3)
  # As ratio -> 1, DoG / (ratio - 1) -> -sigma^2 LoG.
  near = np.asarray(make_bank("dog", 15, sigmas=2.0, ratio=1.001), np.float64)[:, :, 0]
  log = np.asarray(make_bank("log", 15, sigmas=2.0), np.float64)[:, :, 0]
  np.testing.assert_allclose(near / 0.001, -4.0 * log, atol=2e-3 * np.abs(log).max() * 4)


# ---------------------------------------------------------------- DCT


@pytest.mark.parametrize("size", [4, (5, 3), 8])
def test_dct_basis_is_orthonormal(size):
  bank = np.asarray(make_bank("dct", size), np.float64)
  flat = bank.reshape(-1, bank.shape[-1])
  assert flat.shape[0] == flat.shape[1]
  np.testing.assert_allclose(flat.T @ flat, np.eye(flat.shape[1]), atol=1e-6)
  np.testing.assert_allclose(bank[:, :, 0], 1 / math.sqrt(flat.shape[0]), atol=1e-7)


def test_dct_coefficients_match_scipy_dctn():
  patch = np.random.default_rng(0).normal(size=(5, 6))
  bank = np.asarray(make_bank("dct", (5, 6)), np.float64)
  reference = scipy.fft.dctn(patch, norm="ortho")
  for k, (u, v) in enumerate(zigzag_order(5, 6)):
    assert np.sum(bank[:, :, k] * patch) == pytest.approx(reference[u, v], abs=1e-5)


def test_dct_zigzag_is_jpeg_order_and_num_truncates():
  jpeg = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48]
  assert [8 * u + v for u, v in zigzag_order(8, 8)][: len(jpeg)] == jpeg
  assert sorted(zigzag_order(3, 5)) == [(u, v) for u in range(3) for v in range(5)]
  full = np.asarray(make_bank("dct", 8))
  np.testing.assert_array_equal(np.asarray(make_bank("dct", 8, num=10)), full[:, :, :10])


# ---------------------------------------------------------------- classic


TEXTBOOK = {
  "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
  "box_blur": np.full((3, 3), 1 / 9),
  "gaussian_blur": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16,
  "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
  "sobel_x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
  "sobel_y": [[1, 2, 1], [0, 0, 0], [-1, -2, -1]],
  "prewitt_x": [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]],
  "prewitt_y": [[1, 1, 1], [0, 0, 0], [-1, -1, -1]],
  "scharr_x": [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]],
  "scharr_y": [[3, 10, 3], [0, 0, 0], [-3, -10, -3]],
  "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
  "emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
}


@pytest.mark.parametrize("name", classic.CLASSIC_NAMES)
def test_classic_3x3_are_textbook_matrices(name):
  expected = np.asarray(TEXTBOOK[name], np.float32)
  np.testing.assert_allclose(np.asarray(make_bank(name, 3))[:, :, 0], expected, atol=1e-7)
  index = classic.CLASSIC_NAMES.index(name)
  np.testing.assert_allclose(np.asarray(make_bank("classic", 3))[:, :, index], expected, atol=1e-7)


@pytest.mark.parametrize(
  "name,rising,response",
  [
    ("sobel_x", "right", 8.0),
    ("prewitt_x", "right", 6.0),
    ("scharr_x", "right", 32.0),
    ("sobel_y", "up", 8.0),
    ("prewitt_y", "up", 6.0),
    ("scharr_y", "up", 32.0),
  ],
)
def test_derivative_kernels_respond_positively_along_their_axis(name, rising, response):
  rows, cols = np.mgrid[0:8, 0:8].astype(np.float64)
  image = cols if rising == "right" else -rows  # y points up: intensity rising towards row 0
  kernel = np.asarray(make_bank(name, 3))[:, :, 0]
  np.testing.assert_allclose(_correlate(image, kernel), response)
  other = -rows if rising == "right" else cols
  np.testing.assert_allclose(_correlate(other, kernel), 0.0, atol=1e-6)


def test_classic_kernels_agree_with_scipy_ndimage():
  image = np.random.default_rng(1).normal(size=(12, 10))
  cases = [
    ("sobel_x", ndimage.sobel(image, axis=1)),
    ("sobel_y", -ndimage.sobel(image, axis=0)),
    ("prewitt_x", ndimage.prewitt(image, axis=1)),
    ("prewitt_y", -ndimage.prewitt(image, axis=0)),
    ("laplacian", ndimage.laplace(image)),
  ]
  for name, reference in cases:
    kernel = np.asarray(make_bank(name, 3), np.float64)[:, :, 0]
    np.testing.assert_allclose(ndimage.correlate(image, kernel), reference, atol=1e-5)
  # Laplacian of x^2 + y^2 is 4, exactly, through the conv op too.
  rows, cols = np.mgrid[0:6, 0:6].astype(np.float64)
  lap = np.asarray(make_bank("laplacian", 3))[:, :, 0]
  np.testing.assert_allclose(_correlate(rows**2 + cols**2, lap), 4.0)


def test_classic_larger_sizes():
  sobel5 = np.asarray(make_bank("sobel_x", 5))[:, :, 0]  # OpenCV's 5x5 Sobel
  np.testing.assert_allclose(sobel5, np.outer([1, 4, 6, 4, 1], [-1, -2, 0, 2, 1]))
  np.testing.assert_allclose(
    np.asarray(make_bank("sobel_y", 5))[:, :, 0], np.outer([1, 2, 0, -2, -1], [1, 4, 6, 4, 1])
  )
  rect = np.asarray(make_bank("sobel_x", (3, 5)))[:, :, 0]
  np.testing.assert_allclose(rect, np.outer([1, 2, 1], [-1, -2, 0, 2, 1]))
  for name in ("sharpen", "laplacian", "emboss", "scharr_y"):
    padded = np.asarray(make_bank(name, (5, 7)))[:, :, 0]
    expected = np.zeros((5, 7))
    expected[1:4, 2:5] = TEXTBOOK[name]
    np.testing.assert_array_equal(padded, expected)
  gauss4 = np.asarray(make_bank("gaussian_blur", 4))[:, :, 0]
  np.testing.assert_allclose(gauss4, np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64, atol=1e-7)
  for name, size in [
    ("box_blur", (4, 6)),
    ("gaussian_blur", 6),
    ("identity", 1),
    ("identity", 7),
    ("sharpen", 5),
    ("emboss", 5),
  ]:
    assert np.asarray(make_bank(name, size)).sum() == pytest.approx(1.0, abs=1e-6)
  image = np.random.default_rng(2).normal(size=(9, 9))
  np.testing.assert_allclose(
    _correlate(image, np.asarray(make_bank("identity", 5))[:, :, 0]), image[2:-2, 2:-2], atol=1e-6
  )


@pytest.mark.parametrize(
  "name,size",
  [
    ("sobel_x", 4),
    ("sobel_y", 1),
    ("sharpen", 2),
    ("emboss", (3, 4)),
    ("laplacian", 1),
    ("identity", 6),
    ("classic", 4),
  ],
)
def test_classic_refuses_uncentred_sizes(name, size):
  with pytest.raises(ValueError, match="odd kernel sizes"):
    make_bank(name, size)


# ---------------------------------------------------------------- random and user


def test_random_bank_reproducible_from_seed():
  a = np.asarray(make_bank("random", 3, num=8, seed=5))
  np.testing.assert_array_equal(a, np.asarray(make_bank("random", 3, num=8, seed=5)))
  assert not np.allclose(a, np.asarray(make_bank("random", 3, num=8, seed=6)))
  np.testing.assert_array_equal(a, np.asarray(random_he_kernel(5, (3, 3, 1, 8)))[:, :, 0])
  key = jax.random.key(5)
  np.testing.assert_array_equal(
    np.asarray(random_he_kernel(key, (3, 3, 1, 8))), np.asarray(random_he_kernel(5, (3, 3, 1, 8)))
  )
  raw_key = jax.random.PRNGKey(5)
  assert random_he_kernel(raw_key, (3, 3, 1, 8)).shape == (3, 3, 1, 8)


def test_random_scales_are_he_normal():
  kernel = random_he_kernel(0, (3, 3, 64, 128))
  assert kernel.dtype == jnp.float32 and kernel.shape == (3, 3, 64, 128)
  kernel = np.asarray(kernel, np.float64)
  assert kernel.std() == pytest.approx(math.sqrt(2 / (3 * 3 * 64)), rel=0.02)
  assert abs(kernel.mean()) < 0.02 * kernel.std()
  bank = np.asarray(random_bank(5, num=2000, seed=1), np.float64)
  assert bank.std() == pytest.approx(math.sqrt(2 / 25), rel=0.02)
  wide = np.asarray(random_bank(5, num=2000, seed=1, fan_in=200), np.float64)
  np.testing.assert_allclose(wide, bank * math.sqrt(25 / 200), rtol=1e-5)


@pytest.mark.parametrize(
  "seed,shape",
  [
    (-1, (3, 3, 1, 1)),
    (1.5, (3, 3, 1, 1)),
    (True, (3, 3, 1, 1)),
    ("0", (3, 3, 1, 1)),
    (0, (3, 3, 1)),
    (0, (3, 3, 0, 4)),
  ],
)
def test_random_he_kernel_refuses_bad_input(seed, shape):
  with pytest.raises(ValueError):
    random_he_kernel(seed, shape)


def test_user_bank_shapes_and_errors():
  one = np.arange(15.0).reshape(3, 5)
  bank = np.asarray(make_bank("user", (3, 5), array=one))
  assert bank.shape == (3, 5, 1)
  np.testing.assert_array_equal(bank[:, :, 0], one)
  many = np.random.default_rng(0).normal(size=(3, 3, 4))
  np.testing.assert_allclose(np.asarray(make_bank("user", 3, array=many.tolist())), many, rtol=1e-6)
  with pytest.raises(ValueError, match=r"shape \(5, 5\) or \(5, 5, n\).*got shape \(3, 3, 4\)"):
    make_bank("user", 5, array=many)
  with pytest.raises(ValueError, match=r"got shape \(3, 3, 1, 1\)"):
    make_bank("user", 3, array=np.ones((3, 3, 1, 1)))
  with pytest.raises(ValueError, match="finite"):
    make_bank("user", 3, array=np.full((3, 3), np.nan))
  with pytest.raises(ValueError, match="needs the option array"):
    make_bank("user", 3)
  with pytest.raises(ValueError, match="concrete numeric array"):
    make_bank("user", 3, array="abc")
