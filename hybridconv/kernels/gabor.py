"""Gabor kernels as pure functions of their parameters.

Conventions (fixed once for the whole project, see docs/layers.md "Gabor conventions"):

* **Grid.** A kernel of ``size`` pixels along an axis samples the offsets
  ``arange(size) - (size - 1) / 2`` in pixel units, so the grid is exactly
  centred for odd *and* even sizes (an even kernel has no pixel at offset 0; its
  centre lies between the four middle pixels). Unit spacing, never a
  normalised [-1, 1] grid.
* **Axes.** Arrays are indexed ``[row, column]``. ``x`` grows to the right
  (along columns) and ``y`` grows **upwards** (against the row index), so angles
  turn counter-clockwise as the kernel is displayed with ``imshow``.
* **Orientation theta** (radians) is the direction of the carrier's wave
  vector, measured counter-clockwise from the x axis. The stripes run
  perpendicular to it: ``theta = 0`` gives vertical stripes (intensity varies
  left to right), ``theta = pi / 2`` horizontal stripes. A real kernel with
  ``psi = 0`` or ``pi`` is the same at ``theta`` and ``theta + pi``, so
  orientations are reported modulo pi.
* **Frequency f** is in cycles per pixel along the wave vector (wavelength
  ``1 / f`` pixels). It must stay below the Nyquist limit 0.5; the constraint
  maps in :mod:`hybridconv.kernels.constraints` guarantee this for learned
  values.
* **Width sigma** is the standard deviation of the Gaussian envelope, in
  pixels, along the wave vector (not an inverse width).
* **Aspect ratio gamma** scales the envelope across the wave vector: the
  envelope's standard deviation along the stripes is ``sigma / gamma``
  (``gamma < 1`` gives elongated stripes, as in V1 simple cells).
* **Phase psi** (radians) shifts the carrier: ``psi = 0`` is even (cosine,
  symmetric), ``psi = -pi / 2`` is odd (sine, antisymmetric, positive lobe on
  the side the wave vector points to).

The envelope has peak 1 (no ``1 / (2 pi sigma^2)`` prefactor); optional
zero-mean and unit-norm normalisation are applied per filter.

Every function broadcasts over its parameter arrays: parameters of shape
``batch`` give kernels of shape ``(kh, kw, *batch)``. Parameters of shape
``(cin, cout)`` therefore give an HWIO kernel directly.
"""

from __future__ import annotations

import math
import numbers

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

# Added to denominators so that normalising a kernel that underflowed to zero
# gives zero (finite) instead of NaN.
# The parameters of a Gabor kernel, in the order sources, tables and reports list them.
GABOR_PARAMETERS = ("theta", "frequency", "sigma", "gamma", "psi")
_EPS = 1e-12


def _is_whole(value) -> bool:
  """True for ints and integral floats (numpy scalars included), False for bools."""
  return (
    not isinstance(value, bool)
    and isinstance(value, numbers.Real)
    and math.isfinite(value)
    and float(value).is_integer()
  )


def kernel_size_2d(kernel_size: int | tuple[int, int]) -> tuple[int, int]:
  """Returns ``(kh, kw)`` from an int or a pair, refusing sizes below 1."""
  if _is_whole(kernel_size):
    size = (kernel_size, kernel_size)
  elif isinstance(kernel_size, tuple | list):
    size = tuple(kernel_size)
  else:
    size = ()
  if len(size) != 2 or not all(_is_whole(s) and s >= 1 for s in size):
    raise ValueError(
      f"kernel_size must be a positive int or a pair of positive ints, got {kernel_size!r}"
    )
  return int(size[0]), int(size[1])


def centred_grid(kernel_size: int | tuple[int, int]) -> tuple[Array, Array]:
  """Pixel-unit coordinates ``(x, y)`` of a kernel, each of shape ``(kh, kw)``.

  ``x`` increases along columns (rightwards), ``y`` increases against the row
  index (upwards); both are exactly centred: offsets ``i - (n - 1) / 2``.
  """
  kh, kw = kernel_size_2d(kernel_size)
  cols = jnp.arange(kw, dtype=jnp.float32) - (kw - 1) / 2
  rows = jnp.arange(kh, dtype=jnp.float32) - (kh - 1) / 2
  y, x = jnp.meshgrid(-rows, cols, indexing="ij")
  return x, y


def _rotated_coordinates(kernel_size, theta, frequency, sigma, gamma, psi):
  """Broadcast parameters against the grid: returns (x', y') and the params, trailing batch."""
  params = jnp.broadcast_arrays(
    *(jnp.asarray(p, jnp.float32) for p in (theta, frequency, sigma, gamma, psi))
  )
  theta, frequency, sigma, gamma, psi = params
  x, y = centred_grid(kernel_size)
  expand = (slice(None), slice(None)) + (None,) * theta.ndim
  x, y = x[expand], y[expand]
  cos_t, sin_t = jnp.cos(theta), jnp.sin(theta)
  x_rot = x * cos_t + y * sin_t  # along the wave vector
  y_rot = -x * sin_t + y * cos_t  # along the stripes
  return x_rot, y_rot, frequency, sigma, gamma, psi


def gabor_envelope(kernel_size, theta, sigma, gamma) -> Array:
  """Gaussian envelope of peak 1, shape ``(kh, kw, *batch)``."""
  x_rot, y_rot, _, sigma, gamma, _ = _rotated_coordinates(
    kernel_size, theta, 0.0, sigma, gamma, 0.0
  )
  return jnp.exp(-(x_rot**2 + (gamma * y_rot) ** 2) / (2 * sigma**2))


def _normalise(kernel: Array, envelope: Array, zero_mean: bool, unit_norm: bool) -> Array:
  """Per-filter DC removal and L2 normalisation over the two spatial axes."""
  if zero_mean:
    # Morlet-style correction: subtract a multiple of the envelope (not a
    # constant) so the kernel keeps its compact support and sums to zero.
    beta = kernel.sum(axis=(0, 1)) / (envelope.sum(axis=(0, 1)) + _EPS)
    kernel = kernel - beta * envelope
  if unit_norm:
    norm = jnp.sqrt(jnp.sum(jnp.abs(kernel) ** 2, axis=(0, 1)) + _EPS)
    kernel = kernel / norm
  return kernel


def gabor_complex(
  kernel_size: int | tuple[int, int],
  theta: ArrayLike,
  frequency: ArrayLike,
  sigma: ArrayLike,
  gamma: ArrayLike = 1.0,
  psi: ArrayLike = 0.0,
  *,
  zero_mean: bool = False,
  unit_norm: bool = False,
) -> Array:
  """Complex Gabor ``envelope * exp(i (2 pi f x' + psi))``, shape ``(kh, kw, *batch)``.

  Args:
    kernel_size: ``k`` or ``(kh, kw)``, any positive size, odd or even.
    theta: orientation of the wave vector in radians, counter-clockwise from x.
    frequency: cycles per pixel (below 0.5).
    sigma: envelope standard deviation along the wave vector, pixels.
    gamma: aspect ratio; the width along the stripes is ``sigma / gamma``.
    psi: carrier phase in radians.
    zero_mean: remove the DC component (Morlet correction with the envelope).
    unit_norm: scale each filter to unit L2 norm.

  Returns:
    complex64 kernels; parameters broadcast and become trailing axes.
  """
  x_rot, y_rot, frequency, sigma, gamma, psi = _rotated_coordinates(
    kernel_size, theta, frequency, sigma, gamma, psi
  )
  envelope = jnp.exp(-(x_rot**2 + (gamma * y_rot) ** 2) / (2 * sigma**2))
  kernel = envelope * jnp.exp(1j * (2 * jnp.pi * frequency * x_rot + psi))
  return _normalise(kernel, envelope, zero_mean, unit_norm)


def gabor_real(
  kernel_size: int | tuple[int, int],
  theta: ArrayLike,
  frequency: ArrayLike,
  sigma: ArrayLike,
  gamma: ArrayLike = 1.0,
  psi: ArrayLike = 0.0,
  *,
  zero_mean: bool = False,
  unit_norm: bool = False,
) -> Array:
  """Real Gabor ``envelope * cos(2 pi f x' + psi)``, shape ``(kh, kw, *batch)``.

  The arguments are those of :func:`gabor_complex`. Computed directly with a
  cosine (not as the real part of the complex kernel) so that no complex
  arithmetic enters a layer's forward or backward pass.
  """
  x_rot, y_rot, frequency, sigma, gamma, psi = _rotated_coordinates(
    kernel_size, theta, frequency, sigma, gamma, psi
  )
  envelope = jnp.exp(-(x_rot**2 + (gamma * y_rot) ** 2) / (2 * sigma**2))
  kernel = envelope * jnp.cos(2 * jnp.pi * frequency * x_rot + psi)
  return _normalise(kernel, envelope, zero_mean, unit_norm)


def gabor_quadrature(
  kernel_size: int | tuple[int, int],
  theta: ArrayLike,
  frequency: ArrayLike,
  sigma: ArrayLike,
  gamma: ArrayLike = 1.0,
  psi: ArrayLike = 0.0,
  *,
  zero_mean: bool = False,
  unit_norm: bool = False,
) -> tuple[Array, Array]:
  """Quadrature pair ``(even, odd)``: real kernels at phases ``psi`` and ``psi - pi/2``.

  The pair are the real and imaginary parts of :func:`gabor_complex`; the sum of
  their squared responses is the phase-invariant "complex cell" energy. Each is
  normalised separately.
  """
  even = gabor_real(
    kernel_size, theta, frequency, sigma, gamma, psi, zero_mean=zero_mean, unit_norm=unit_norm
  )
  odd = gabor_real(
    kernel_size,
    theta,
    frequency,
    sigma,
    gamma,
    jnp.asarray(psi) - jnp.pi / 2,
    zero_mean=zero_mean,
    unit_norm=unit_norm,
  )
  return even, odd
