"""Known-answer tests of the Gabor kernel functions and their conventions."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from skimage.filters import gabor_kernel

from hybridconv.kernels.gabor import (
  centred_grid,
  gabor_complex,
  gabor_envelope,
  gabor_quadrature,
  gabor_real,
  kernel_size_2d,
)


def _formula(x, y, theta, f, sigma, gamma, psi):
  """The documented closed form, written out independently in float64."""
  xr = x * math.cos(theta) + y * math.sin(theta)
  yr = -x * math.sin(theta) + y * math.cos(theta)
  return math.exp(-(xr**2 + gamma**2 * yr**2) / (2 * sigma**2)) * math.cos(
    2 * math.pi * f * xr + psi
  )


# ---------------------------------------------------------------- grid


@pytest.mark.parametrize("size", [1, 4, 5, (4, 7), (6, 3)])
def test_grid_is_exactly_centred(size):
  x, y = map(np.asarray, centred_grid(size))
  kh, kw = kernel_size_2d(size)
  assert x.shape == y.shape == (kh, kw)
  assert x.mean() == 0 and y.mean() == 0
  # Unit spacing; x grows along columns, y grows upwards (against the row index).
  np.testing.assert_array_equal(np.diff(x, axis=1), 1.0)
  np.testing.assert_array_equal(np.diff(y, axis=0), -1.0)
  np.testing.assert_array_equal(np.diff(x, axis=0), 0.0)
  np.testing.assert_array_equal(x[0], np.arange(kw) - (kw - 1) / 2)
  np.testing.assert_array_equal(y[:, 0], (kh - 1) / 2 - np.arange(kh))


def test_even_grid_has_no_zero_offset():
  x, y = map(np.asarray, centred_grid(4))
  assert not np.any(x == 0) and not np.any(y == 0)
  np.testing.assert_array_equal(x[0], [-1.5, -0.5, 0.5, 1.5])
  np.testing.assert_array_equal(y[:, 0], [1.5, 0.5, -0.5, -1.5])


def test_kernel_size_2d_accepts_ints_pairs_and_numpy_ints():
  assert kernel_size_2d(3) == (3, 3)
  assert kernel_size_2d(np.int64(5)) == (5, 5)
  assert kernel_size_2d((4, 7)) == (4, 7)
  assert kernel_size_2d([3.0, 2]) == (3, 2)


@pytest.mark.parametrize("bad", [0, -3, 2.5, (3,), (3, 3, 3), (3, 0), None, "3", True, math.nan])
def test_kernel_size_2d_refuses_bad_sizes(bad):
  with pytest.raises(ValueError, match="kernel_size must be"):
    kernel_size_2d(bad)


# ---------------------------------------------------------------- closed form


@pytest.mark.parametrize(
  "theta,f,psi", [(0.0, 0.2, 0.0), (0.7, 0.11, 1.3), (2.5, 0.3, -math.pi / 2)]
)
def test_centre_of_odd_kernel_is_cos_psi(theta, f, psi):
  k = np.asarray(gabor_real(7, theta, f, 2.0, 0.6, psi))
  assert k[3, 3] == pytest.approx(math.cos(psi), abs=1e-6)


@pytest.mark.parametrize("size,row,col", [(7, 1, 5), (6, 0, 4), ((5, 8), 4, 0)])
def test_chosen_pixel_equals_formula(size, row, col):
  theta, f, sigma, gamma, psi = 0.9, 0.17, 1.8, 0.5, 0.4
  kh, kw = kernel_size_2d(size)
  x, y = col - (kw - 1) / 2, (kh - 1) / 2 - row
  k = np.asarray(gabor_real(size, theta, f, sigma, gamma, psi))
  assert k[row, col] == pytest.approx(_formula(x, y, theta, f, sigma, gamma, psi), abs=1e-6)
  kc = np.asarray(gabor_complex(size, theta, f, sigma, gamma, psi))
  assert kc[row, col].real == pytest.approx(k[row, col], abs=1e-6)
  assert kc[row, col].imag == pytest.approx(
    _formula(x, y, theta, f, sigma, gamma, psi - math.pi / 2), abs=1e-6
  )


@pytest.mark.parametrize("size", [5, 6, (4, 7)])
def test_envelope_is_centred(size):
  # theta = 0: the envelope is symmetric under each flip; any theta: under both.
  env = np.asarray(gabor_envelope(size, 0.0, 1.5, 0.5))
  np.testing.assert_allclose(env, env[::-1], atol=1e-7)
  np.testing.assert_allclose(env, env[:, ::-1], atol=1e-7)
  env = np.asarray(gabor_envelope(size, 0.6, 1.5, 0.5))
  np.testing.assert_allclose(env, env[::-1, ::-1], atol=1e-7)
  assert not np.allclose(env, env[::-1])  # a rotated ellipse is not mirror-symmetric


# ---------------------------------------------------------------- orientation and phase


@pytest.mark.parametrize("size", [7, 6])
def test_theta_zero_carrier_varies_along_x_only(size):
  kernel = np.asarray(gabor_real(size, 0.0, 0.15, 2.0, 0.7, 0.3))
  carrier = kernel / np.asarray(gabor_envelope(size, 0.0, 2.0, 0.7))
  np.testing.assert_allclose(carrier, np.broadcast_to(carrier[:1], carrier.shape), atol=1e-5)
  assert np.ptp(carrier[0]) > 0.5  # and it does vary across columns: vertical stripes
  kernel = np.asarray(gabor_real(size, math.pi / 2, 0.15, 2.0, 0.7, 0.3))
  carrier = kernel / np.asarray(gabor_envelope(size, math.pi / 2, 2.0, 0.7))
  np.testing.assert_allclose(carrier, np.broadcast_to(carrier[:, :1], carrier.shape), atol=1e-5)


@pytest.mark.parametrize("size", [7, 8])
@pytest.mark.parametrize("theta", [0.0, 0.4, 2.0])
def test_adding_quarter_turn_is_counter_clockwise_rot90(size, theta):
  args = (0.13, 1.7, 0.6, 0.9)  # frequency, sigma, gamma, psi: nothing symmetric
  k = np.asarray(gabor_real(size, theta, *args))
  turned = np.asarray(gabor_real(size, theta + math.pi / 2, *args))
  np.testing.assert_allclose(turned, np.rot90(k), atol=1e-5)  # np.rot90 turns CCW on screen
  assert not np.allclose(turned, np.rot90(k, -1), atol=1e-3)


@pytest.mark.parametrize("size", [7, 6])
def test_phase_zero_is_even_and_minus_half_pi_is_odd(size):
  even = np.asarray(gabor_real(size, 0.5, 0.2, 1.5, 0.8, 0.0))
  odd = np.asarray(gabor_real(size, 0.5, 0.2, 1.5, 0.8, -math.pi / 2))
  np.testing.assert_allclose(even, even[::-1, ::-1], atol=1e-6)
  np.testing.assert_allclose(odd, -odd[::-1, ::-1], atol=1e-6)


@pytest.mark.parametrize("theta", [0.0, math.pi / 2, 1.0, 2.5])
def test_odd_phase_positive_lobe_where_wave_vector_points(theta):
  odd = np.asarray(gabor_real(9, theta, 0.1, 2.0, 1.0, -math.pi / 2))
  x, y = map(np.asarray, centred_grid(9))
  along = x * math.cos(theta) + y * math.sin(theta)
  assert np.sum(odd[along > 0]) > 0 and np.sum(odd[along < 0]) < 0
  if theta == 0.0:
    assert np.all(odd[:, 5:] > 0)  # right of centre, within half a wavelength
  if theta == math.pi / 2:
    assert np.all(odd[:4] > 0)  # above the centre (y up)


# ---------------------------------------------------------------- scikit-image


@pytest.mark.parametrize(
  "theta,f,sigma,gamma,psi",
  [
    (0.0, 0.1, 3.0, 1.0, 0.0),
    (0.3, 0.2, 2.0, 1.0, 0.5),
    (1.2, 0.15, 2.5, 0.5, -1.0),
    (2.8, 0.25, 1.5, 2.0, 3.0),
  ],
)
def test_matches_skimage_gabor_kernel(theta, f, sigma, gamma, psi):
  # skimage's y axis points down and its kernel carries 1 / (2 pi sx sy).
  sigma_y = sigma / gamma
  reference = gabor_kernel(f, theta, sigma_x=sigma, sigma_y=sigma_y, offset=psi)
  reference = reference * (2 * math.pi * sigma * sigma_y)
  ours = np.asarray(gabor_complex(reference.shape, theta, f, sigma, gamma, psi))[::-1]
  np.testing.assert_allclose(ours.real, reference.real, atol=2e-6)
  np.testing.assert_allclose(ours.imag, reference.imag, atol=2e-6)
  real = np.asarray(gabor_real(reference.shape, theta, f, sigma, gamma, psi))[::-1]
  np.testing.assert_allclose(real, reference.real, atol=2e-6)


# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize("size", [5, 8])
def test_zero_mean_and_unit_norm(size):
  args = (size, 0.3, 0.08, 2.0, 0.7, 0.2)
  raw = np.asarray(gabor_real(*args))
  assert abs(raw.sum()) > 1  # low frequency: a large DC component to remove
  assert np.asarray(gabor_real(*args, zero_mean=True)).sum() == pytest.approx(0, abs=1e-5)
  assert np.asarray(gabor_complex(*args, zero_mean=True)).sum() == pytest.approx(0, abs=1e-5)
  unit = np.asarray(gabor_real(*args, unit_norm=True))
  assert np.linalg.norm(unit) == pytest.approx(1, abs=1e-5)
  np.testing.assert_allclose(unit, raw / np.linalg.norm(raw), atol=1e-6)
  both = np.asarray(gabor_real(*args, zero_mean=True, unit_norm=True))
  assert both.sum() == pytest.approx(0, abs=1e-5)
  assert np.linalg.norm(both) == pytest.approx(1, abs=1e-5)
  norm_c = np.asarray(gabor_complex(*args, unit_norm=True))
  assert np.sqrt(np.sum(np.abs(norm_c) ** 2)) == pytest.approx(1, abs=1e-5)


def test_zero_mean_subtracts_a_multiple_of_the_envelope():
  args = (7, 0.3, 0.08, 2.0, 0.7, 0.2)
  raw = np.asarray(gabor_real(*args), np.float64)
  env = np.asarray(gabor_envelope(7, 0.3, 2.0, 0.7), np.float64)
  expected = raw - raw.sum() / env.sum() * env
  np.testing.assert_allclose(np.asarray(gabor_real(*args, zero_mean=True)), expected, atol=1e-6)


@pytest.mark.parametrize("zero_mean", [False, True])
def test_quadrature_pair_is_real_and_imaginary_part(zero_mean):
  args = (6, 1.1, 0.2, 1.6, 0.8, 0.3)
  even, odd = gabor_quadrature(*args, zero_mean=zero_mean)
  complex_kernel = np.asarray(gabor_complex(*args, zero_mean=zero_mean))
  np.testing.assert_allclose(np.asarray(even), complex_kernel.real, atol=1e-6)
  np.testing.assert_allclose(np.asarray(odd), complex_kernel.imag, atol=1e-6)


# ---------------------------------------------------------------- batching and autodiff


def test_parameters_broadcast_to_hwio():
  cin, cout = 2, 3
  theta = jnp.linspace(0, 3, cin * cout).reshape(cin, cout)
  frequency = jnp.array([[0.1], [0.2]])  # (cin, 1)
  sigma = jnp.array([1.5, 2.0, 2.5])  # (cout,)
  kernel = np.asarray(gabor_real(5, theta, frequency, sigma, 0.7, 0.3, zero_mean=True))
  assert kernel.shape == (5, 5, cin, cout)
  for i in range(cin):
    for o in range(cout):
      single = gabor_real(5, theta[i, o], frequency[i, 0], sigma[o], 0.7, 0.3, zero_mean=True)
      np.testing.assert_allclose(kernel[:, :, i, o], np.asarray(single), atol=1e-6)
  assert gabor_complex((4, 6), theta, 0.2, 2.0).shape == (4, 6, cin, cout)


def test_jit_matches_eager():
  f = jax.jit(lambda t, f: gabor_real(7, t, f, 2.0, zero_mean=True, unit_norm=True))
  np.testing.assert_allclose(
    np.asarray(f(0.4, 0.2)),
    np.asarray(gabor_real(7, 0.4, 0.2, 2.0, zero_mean=True, unit_norm=True)),
    atol=1e-6,
  )


@pytest.mark.parametrize("zero_mean,unit_norm", [(False, False), (True, True)])
def test_gradients_are_finite_and_correct(zero_mean, unit_norm):
  target = jnp.asarray(np.random.default_rng(0).normal(size=(6, 6)), jnp.float32)

  def loss(theta, frequency, sigma, gamma, psi):
    k = gabor_real(6, theta, frequency, sigma, gamma, psi, zero_mean=zero_mean, unit_norm=unit_norm)
    return jnp.sum(k * target)

  params = tuple(jnp.float32(v) for v in (0.7, 0.15, 1.8, 0.8, 0.3))
  grads = jax.grad(loss, argnums=range(5))(*params)
  assert all(np.isfinite(g) and g != 0 for g in grads)
  # Kernels are float32 throughout: central differences with a wide step.
  check_grads(loss, params, order=1, modes=["rev"], eps=1e-2, atol=2e-3, rtol=2e-3)
