"""Gaussian-family banks: Gaussian derivatives (as in RFNN), LoG and DoG.

All kernels are samples of closed forms on the project's exactly centred pixel
grid (:func:`hybridconv.kernels.gabor.centred_grid`: ``x`` right, ``y`` up),
built from the isotropic Gaussian normalised in the continuum,

    G(x, y) = exp(-(x^2 + y^2) / (2 sigma^2)) / (2 pi sigma^2),

so a kernel large enough for its sigma sums to about 1 (order 0) or 0
(derivatives, LoG, DoG); a truncated one loses the mass outside it. Values are
computed in float64 and returned as float32 ``(kh, kw, n)`` arrays.

**Derivative sign.** Layers apply kernels by cross-correlation
(``lax.conv_general_dilated``). The derivative kernel for ``(i, j)`` is
therefore the *mirrored* derivative ``(-1)^(i+j) d^(i+j) G / dx^i dy^j``,
so that correlating it with an image gives the derivative of the
Gaussian-smoothed image, ``d^(i+j) (G * img) / dx^i dy^j``. First derivatives
then have the sign of the Sobel kernels (positive for intensity rising to the
right, or upwards). In closed form with the probabilists' Hermite polynomials
``He_n`` (``He_1(t) = t``, ``He_2(t) = t^2 - 1``, ...):

    k_ij(x, y) = He_i(x / sigma) He_j(y / sigma) G(x, y) / sigma^(i + j).

Even orders (``i + j`` even) equal the plain sampled derivative.
"""

from __future__ import annotations

import jax
import numpy as np
from numpy.polynomial import hermite_e

from hybridconv.kernels.gabor import centred_grid
from hybridconv.kernels.options import check_float, check_float_tuple, check_int

MAX_DERIVATIVE_ORDER = 4


def _grid64(kernel_size) -> tuple[np.ndarray, np.ndarray]:
  """The centred ``(x, y)`` grid in float64 (its half-integer values are exact in float32).

  Evaluated eagerly even under ``jit``, so that banks stay NumPy constants when
  a layer builds them inside a traced function.
  """
  with jax.ensure_compile_time_eval():
    x, y = centred_grid(kernel_size)
  return np.asarray(x, np.float64), np.asarray(y, np.float64)


def _gaussian(x: np.ndarray, y: np.ndarray, sigma: float) -> np.ndarray:
  """Isotropic 2-D Gaussian density of standard deviation ``sigma`` pixels."""
  return np.exp(-(x**2 + y**2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)


def _hermite(n: int, t: np.ndarray) -> np.ndarray:
  """Probabilists' Hermite polynomial ``He_n(t)``."""
  return hermite_e.hermeval(t, [0] * n + [1])


def derivative_orders(order: int) -> list[tuple[int, int]]:
  """All ``(i, j)`` with ``i + j <= order``: by total order, then x-derivatives first.

  For ``order = 2``: ``(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)``, the
  ``(order + 1)(order + 2) / 2`` partial derivatives of RFNN's basis.
  """
  return [(n - j, j) for n in range(order + 1) for j in range(n + 1)]


def gaussian_derivative(kernel_size, sigma: float, dx: int, dy: int) -> np.ndarray:
  """One Gaussian-derivative kernel ``He_dx(x/s) He_dy(y/s) G(x, y) / s^(dx+dy)``, float64.

  Args:
    kernel_size: ``k`` or ``(kh, kw)``, odd or even.
    sigma: standard deviation of the Gaussian in pixels.
    dx: derivative order along x (rightwards).
    dy: derivative order along y (upwards).

  Returns:
    ``(kh, kw)`` array whose cross-correlation with an image is the
    ``(dx, dy)`` derivative of the image smoothed by ``G`` (see module notes).
  """
  x, y = _grid64(kernel_size)
  return (
    _hermite(dx, x / sigma) * _hermite(dy, y / sigma) * _gaussian(x, y, sigma) / sigma ** (dx + dy)
  )


def gaussian_derivative_bank(kernel_size, *, order: int = 2, sigmas=(1.0, 2.0)) -> np.ndarray:
  """Gaussian derivatives up to ``order`` at each scale in ``sigmas`` (RFNN's basis).

  Args:
    kernel_size: ``k`` or ``(kh, kw)``.
    order: highest total derivative order, 0 to 4.
    sigmas: Gaussian standard deviations in pixels (a number or a sequence).

  Returns:
    float32 ``(kh, kw, len(sigmas) * (order + 1) * (order + 2) / 2)``; sigma
    varies slowest, then the derivatives in :func:`derivative_orders` order.
    Odd-order kernels are antisymmetric, even-order ones symmetric; the
    ``(0, 0)`` kernel is the Gaussian itself, summing to about 1.
  """
  order = check_int("order", order, minimum=0, maximum=MAX_DERIVATIVE_ORDER)
  sigmas = check_float_tuple("sigmas", sigmas, positive=True)
  kernels = [
    gaussian_derivative(kernel_size, s, i, j) for s in sigmas for i, j in derivative_orders(order)
  ]
  return np.stack(kernels, axis=-1).astype(np.float32)


def laplacian_of_gaussian_bank(kernel_size, *, sigmas=(1.0, 2.0)) -> np.ndarray:
  """Laplacian of Gaussian ``((x^2 + y^2 - 2 sigma^2) / sigma^4) G(x, y)``, one per sigma.

  The sign is the Laplacian's own (negative centre, "off-centre"): a bright
  blob of about sigma's size gives a strongly negative response. Sums to about
  0 when the kernel is several sigmas wide; a truncated kernel keeps a negative
  sum (the positive surround is cut off).

  Args:
    kernel_size: ``k`` or ``(kh, kw)``.
    sigmas: Gaussian standard deviations in pixels.

  Returns:
    float32 ``(kh, kw, len(sigmas))``.
  """
  sigmas = check_float_tuple("sigmas", sigmas, positive=True)
  x, y = _grid64(kernel_size)
  kernels = [(x**2 + y**2 - 2 * s**2) / s**4 * _gaussian(x, y, s) for s in sigmas]
  return np.stack(kernels, axis=-1).astype(np.float32)


def difference_of_gaussians_bank(
  kernel_size, *, sigmas=(1.0, 2.0), ratio: float = 1.6
) -> np.ndarray:
  """Difference of Gaussians ``G_sigma - G_(ratio sigma)``, one per sigma.

  On-centre (positive centre, negative surround), the negated shape of the
  ``'log'`` kernel: since ``dG/dsigma = sigma * laplacian(G)``, the DoG tends to
  ``-(ratio - 1) sigma^2`` times the Laplacian of Gaussian as ``ratio -> 1``.
  At Marr and Hildreth's ratio 1.6 the match is only approximate (a cosine
  similarity of about 0.94 on a large kernel), with a wider surround.

  Args:
    kernel_size: ``k`` or ``(kh, kw)``.
    sigmas: centre standard deviations in pixels.
    ratio: surround width over centre width; must exceed 1.

  Returns:
    float32 ``(kh, kw, len(sigmas))``; each sums to about 0 when the kernel
    covers the surround.
  """
  sigmas = check_float_tuple("sigmas", sigmas, positive=True)
  ratio = check_float("ratio", ratio, positive=True)
  if ratio <= 1:
    raise ValueError(f"option ratio must be > 1 (surround wider than centre), got {ratio}")
  x, y = _grid64(kernel_size)
  kernels = [_gaussian(x, y, s) - _gaussian(x, y, ratio * s) for s in sigmas]
  return np.stack(kernels, axis=-1).astype(np.float32)


def master_key_bank(
  kernel_size, *, sigma: float = 1.0, dog_sigmas=(0.8, 1.6), ratio: float = 1.6
) -> np.ndarray:
  """Eight filters of the kinds that trained depthwise filters converge to ("master key" filters).

  Babaiee et al. (arXiv 2412.16751, 2509.11711) find that the depthwise filters of
  trained depthwise-separable CNNs are mostly linear shifts of 8 filters that closely
  match a Gaussian, differences of Gaussians and Gaussian derivatives, and that
  networks with 8 such filters frozen train well. Their extracted filters are not
  reproduced here; this bank is the analytic family they name: a Gaussian at
  ``sigma``, on-centre DoGs at ``dog_sigmas`` (surround ``ratio`` times wider), and
  the five Gaussian derivatives of orders 1 and 2 at ``sigma`` (x, y, xx, xy, yy).

  Returns:
    float32 ``(kh, kw, 8)`` for the defaults (``3 + len(dog_sigmas)`` + 3 in general).
  """
  sigma = check_float("sigma", sigma, positive=True)
  dogs = difference_of_gaussians_bank(kernel_size, sigmas=dog_sigmas, ratio=ratio)
  derivatives = [(1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]
  kernels = [gaussian_derivative(kernel_size, sigma, 0, 0)]
  kernels += [dogs[..., i] for i in range(dogs.shape[-1])]
  kernels += [gaussian_derivative(kernel_size, sigma, i, j) for i, j in derivatives]
  return np.stack(kernels, axis=-1).astype(np.float32)
