"""Spectral statistics of 2-D kernels and a summary of a layer's Gabor-likeness.

These are cheap, fit-free descriptions of what a filter responds to, read off
its 2-D Fourier transform:

* :func:`spectral_peak` -- dominant orientation and frequency (the wave vector
  of the strongest non-DC component) and how much of the filter's energy lies
  near that peak. A Gabor filter concentrates its energy in one pair of
  mirror-image blobs; white noise spreads it evenly.
* :func:`orientation_energy` -- the fraction of (non-DC) energy in each of
  ``num_bins`` orientation bins, and :func:`orientation_selectivity`, one minus
  the circular variance of orientation (near 1 for a single orientation, 0
  for an isotropic filter).
* :func:`frequency_energy` -- the fraction of energy in radial frequency bands.
* :func:`gabor_likeness` -- the layer summary of per-filter Gabor-fit R^2
  values (see :mod:`hybridconv.analysis.gabor_fit`).

Conventions are those of :mod:`hybridconv.kernels.gabor`: kernels are indexed
``[row, column, *batch]``, ``x`` grows along columns and ``y`` *upwards*, the
orientation ``theta`` is the direction of the wave vector counter-clockwise
from the x axis, reported modulo pi, and frequencies are in cycles per pixel.
Spectra are zero-padded to ``pad`` points per axis so that peaks are located to
a fraction of the native ``1 / k`` frequency spacing.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

# Relative power below which a kernel counts as empty (all zeros or constant).
_EMPTY = 1e-20


class SpectralPeak(NamedTuple):
  """Dominant wave vector of each kernel; fields have the kernels' batch shape."""

  theta: Array  # orientation of the wave vector, radians in [0, pi)
  frequency: Array  # cycles per pixel, in [0, 0.5 * sqrt(2)]
  peak_fraction: Array  # share of the kernel's energy within 1/k of the peak or its mirror


def _check_kernels(kernels: ArrayLike, name: str = "kernels") -> Array:
  """Returns kernels as float32 ``(kh, kw, *batch)``; refuses other ranks and sizes below 2."""
  kernels = jnp.asarray(kernels)
  if kernels.ndim < 2:
    raise ValueError(f"{name} must have shape (kh, kw, *batch), got shape {kernels.shape}")
  if min(kernels.shape[:2]) < 2:
    raise ValueError(f"{name} must be at least 2x2 spatially, got shape {kernels.shape}")
  if not any(jnp.issubdtype(kernels.dtype, kind) for kind in (jnp.floating, jnp.integer)):
    raise ValueError(f"{name} must be real-valued, got dtype {kernels.dtype}")
  return kernels.astype(jnp.float32)


def default_pad(kernel_shape: tuple[int, ...]) -> int:
  """FFT size per axis: at least 4x the kernel and 32, a power of two."""
  return 1 << max(5, math.ceil(math.log2(4 * max(kernel_shape[:2]))))


def _frequency_grid(pad: int) -> tuple[np.ndarray, np.ndarray]:
  """``(fx, fy)`` of each bin of a ``pad x pad`` FFT, with ``fy`` pointing up (against rows)."""
  freqs = np.fft.fftfreq(pad)
  fy, fx = np.meshgrid(-freqs, freqs, indexing="ij")
  return fx.astype(np.float32), fy.astype(np.float32)


def power_spectrum(kernels: ArrayLike, pad: int | None = None) -> Array:
  """``|FFT|^2`` of each kernel zero-padded to ``pad x pad``; shape ``(pad, pad, *batch)``.

  Zero padding does not change where the energy is, only how finely it is
  sampled; by Parseval ``sum(power) = pad**2 * sum(kernel**2)``.
  """
  kernels = _check_kernels(kernels)
  pad = default_pad(kernels.shape) if pad is None else pad
  if int(pad) != pad or pad < max(kernels.shape[:2]):
    raise ValueError(f"pad must be an int >= the kernel size {kernels.shape[:2]}, got {pad!r}")
  spectrum = jnp.fft.fft2(kernels, s=(int(pad), int(pad)), axes=(0, 1))
  return jnp.abs(spectrum) ** 2


def _expand(grid: np.ndarray, ndim: int) -> Array:
  return jnp.asarray(grid).reshape(grid.shape + (1,) * (ndim - 2))


def spectral_peak(kernels: ArrayLike, pad: int | None = None) -> SpectralPeak:
  """Dominant orientation and frequency of each kernel from its padded power spectrum.

  The DC bin is ignored when locating the peak, so a blob with a small offset
  still reports its strongest oriented component. The peak fraction counts all
  energy (DC included) within a radius of ``1 / max(kh, kw)`` cycles/pixel --
  one native frequency bin -- of the peak and of its mirror image. At 11x11 it
  is about 0.9 for a Gabor of sigma 3 px and about 0.1 for white noise (two
  discs cover 5% of the spectrum; the maximum picks the luckiest).

  Args:
    kernels: ``(kh, kw, *batch)`` real kernels.
    pad: FFT size per axis (default :func:`default_pad`).

  Returns:
    :class:`SpectralPeak` with fields of shape ``batch``; an all-zero kernel
    gets theta 0, frequency 0 and peak fraction 0.
  """
  kernels = _check_kernels(kernels)
  pad = default_pad(kernels.shape) if pad is None else pad
  power = power_spectrum(kernels, pad)
  batch = power.shape[2:]
  fx, fy = _frequency_grid(pad)
  flat = power.reshape(pad * pad, -1)
  no_dc = flat.at[0].set(0.0)
  index = jnp.argmax(no_dc, axis=0)
  peak_fx, peak_fy = jnp.asarray(fx.ravel())[index], jnp.asarray(fy.ravel())[index]
  theta = jnp.mod(jnp.arctan2(peak_fy, peak_fx), jnp.pi)
  frequency = jnp.hypot(peak_fx, peak_fy)
  radius = 1.0 / max(kernels.shape[:2])

  # Distances on the periodic frequency torus, to the peak and to its mirror.
  def torus_distance(cx, cy):
    dx = jnp.mod(fx.ravel()[:, None] - cx + 0.5, 1.0) - 0.5
    dy = jnp.mod(fy.ravel()[:, None] - cy + 0.5, 1.0) - 0.5
    return jnp.hypot(dx, dy)

  near = (torus_distance(peak_fx, peak_fy) <= radius) | (
    torus_distance(-peak_fx, -peak_fy) <= radius
  )
  total = flat.sum(axis=0)
  empty = total <= _EMPTY
  fraction = jnp.where(empty, 0.0, jnp.sum(flat * near, axis=0) / jnp.where(empty, 1.0, total))
  theta = jnp.where(empty, 0.0, theta)
  frequency = jnp.where(empty, 0.0, frequency)
  return SpectralPeak(theta.reshape(batch), frequency.reshape(batch), fraction.reshape(batch))


def _angles_and_radii(pad: int) -> tuple[np.ndarray, np.ndarray]:
  fx, fy = _frequency_grid(pad)
  return np.mod(np.arctan2(fy, fx), np.pi), np.hypot(fx, fy)


def orientation_energy(kernels: ArrayLike, num_bins: int = 8, pad: int | None = None) -> Array:
  """Fraction of each kernel's non-DC spectral energy per orientation bin.

  Bin ``j`` is centred on ``j * pi / num_bins`` (the orientations of
  :func:`hybridconv.kernels.init.evenly_spaced_orientations`) and is
  ``pi / num_bins`` wide, wrapping modulo pi.

  Returns:
    ``(num_bins, *batch)`` fractions summing to 1 (all zero for a kernel with
    no non-DC energy, e.g. a constant one).
  """
  if int(num_bins) != num_bins or num_bins < 1:
    raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
  kernels = _check_kernels(kernels)
  pad = default_pad(kernels.shape) if pad is None else pad
  power = power_spectrum(kernels, pad)
  angle, radius = _angles_and_radii(pad)
  bins = np.floor(np.mod(angle + np.pi / (2 * num_bins), np.pi) / (np.pi / num_bins)).astype(int)
  bins = np.where(radius > 0, np.minimum(bins, num_bins - 1), -1)
  onehot = (bins[..., None] == np.arange(num_bins)).astype(np.float32)  # (pad, pad, num_bins)
  energy = jnp.einsum("hwj,hw...->j...", onehot, power)
  total = energy.sum(axis=0)
  return energy / jnp.where(total <= _EMPTY, 1.0, total)


def orientation_selectivity(kernels: ArrayLike, pad: int | None = None) -> Array:
  """One minus the circular variance of orientation, weighted by non-DC power.

  ``|sum P exp(2 i phi)| / sum P`` over the spectrum (``phi`` the bin's
  orientation; doubling makes it pi-periodic): 0 for an isotropic kernel such
  as a centred Gaussian, near 1 for a plane wave (0.89 at 11x11: the kernel's
  square window leaks energy to other orientations), about 0.1 for 11x11
  white noise. Shape ``batch``.
  """
  kernels = _check_kernels(kernels)
  pad = default_pad(kernels.shape) if pad is None else pad
  power = power_spectrum(kernels, pad)
  angle, radius = _angles_and_radii(pad)
  weight = (radius > 0).astype(np.float32)
  cos2 = _expand(np.cos(2 * angle) * weight, power.ndim)
  sin2 = _expand(np.sin(2 * angle) * weight, power.ndim)
  total = jnp.sum(power * _expand(weight, power.ndim), axis=(0, 1))
  resultant = jnp.hypot(jnp.sum(power * cos2, axis=(0, 1)), jnp.sum(power * sin2, axis=(0, 1)))
  return jnp.where(total <= _EMPTY, 0.0, resultant / jnp.where(total <= _EMPTY, 1.0, total))


def frequency_energy(
  kernels: ArrayLike,
  edges: tuple[float, ...] = (0.0, 0.0625, 0.125, 0.25, 0.5, 0.75),
  pad: int | None = None,
) -> Array:
  """Fraction of each kernel's energy (DC included) in radial frequency bands.

  Band ``j`` holds radii in ``[edges[j], edges[j+1])`` cycles/pixel; the
  defaults are octave bands below Nyquist plus the diagonal corner up to
  ``0.5 * sqrt(2) < 0.75``, so every bin is counted. Shape ``(len(edges) - 1, *batch)``.
  """
  edges_arr = np.asarray(edges, np.float32)
  increasing = edges_arr.ndim == 1 and edges_arr.size >= 2 and np.all(np.diff(edges_arr) > 0)
  if not increasing or edges_arr[0] < 0:
    raise ValueError(f"edges must be >= 2 increasing non-negative radii, got {edges!r}")
  kernels = _check_kernels(kernels)
  pad = default_pad(kernels.shape) if pad is None else pad
  power = power_spectrum(kernels, pad)
  _, radius = _angles_and_radii(pad)
  band = np.stack(
    [(radius >= lo) & (radius < hi) for lo, hi in zip(edges_arr[:-1], edges_arr[1:], strict=True)],
    -1,
  )
  energy = jnp.einsum("hwj,hw...->j...", band.astype(np.float32), power)
  total = power.sum(axis=(0, 1))
  return energy / jnp.where(total <= _EMPTY, 1.0, total)


def gabor_likeness(r2: ArrayLike, thresholds: tuple[float, ...] = (0.5, 0.8)) -> dict[str, float]:
  """Summary of per-filter Gabor-fit R^2 values, as plain floats for logging.

  Args:
    r2: R^2 of each filter's Gabor fit, any shape (see
      :func:`hybridconv.analysis.gabor_fit.fit_gabor`).
    thresholds: report the fraction of filters with R^2 above each.

  Returns:
    ``{'r2_mean', 'r2_median', 'r2_q25', 'r2_q75', 'frac_r2_above_<t>' ...}``.
  """
  values = np.asarray(r2, np.float64).ravel()
  if values.size == 0:
    raise ValueError("r2 is empty: need at least one filter to summarise")
  if not np.all(np.isfinite(values)):
    bad = int(np.sum(~np.isfinite(values)))
    raise ValueError(f"r2 must be finite, got {bad} non-finite values")
  summary = {
    "r2_mean": float(values.mean()),
    "r2_median": float(np.median(values)),
    "r2_q25": float(np.quantile(values, 0.25)),
    "r2_q75": float(np.quantile(values, 0.75)),
  }
  for t in thresholds:
    summary[f"frac_r2_above_{t:g}"] = float(np.mean(values > t))
  return summary
