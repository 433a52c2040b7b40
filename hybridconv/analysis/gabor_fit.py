"""How Gabor-like is a kernel? Least-squares Gabor fits and the layer score.

Each 2-D kernel ``k`` is fitted with one real Gabor in the conventions of
:mod:`hybridconv.kernels.gabor` (theta, frequency, sigma, gamma, psi), times
an amplitude, optionally moved to a centre ``(cx, cy)`` inside the kernel and
optionally on a constant offset::

    k(x, y) ~= amplitude * gabor_real(theta, f, sigma, gamma, psi)(x - cx, y - cy) [+ offset]

**Gabor-likeness score.** A kernel's score is the fit's coefficient of
determination ``R^2 = 1 - SSE / SST`` with ``SST = sum((k - mean(k))^2)``: the
fraction of the kernel's variance that one Gabor explains. 1 means exactly a
Gabor. White noise (i.e. an untrained He-normal kernel) scores a median of about
0.15 at 11x11, 0.28 at 7x7 and 0.46 at 5x5 (fewer pixels per fitted parameter),
so compare a layer with that baseline for its kernel size. A kernel with
``SST = 0`` (constant or all zeros) has nothing to explain and scores 0. The
score does not change when the kernel is scaled, negated, rotated by 90 degrees
or (with ``fit_centre``) shifted inside its support. Gaussian blobs and
Gaussian-derivative edges are the Gabor family's f -> 0 limits and score high;
:func:`layer_gabor_summary` counts them separately. A layer's score is a
summary of its filters' scores (:func:`layer_gabor_summary`).

**Method** (details in :mod:`hybridconv.analysis.gabor_lm`): amplitude, phase
and offset are linear given the shape parameters, so they are solved in closed
form and Levenberg-Marquardt searches only (theta, f, sigma, gamma, cx, cy),
from the kernel's FFT peak and a grid of orientations x frequencies; the best
start per kernel is refined. Kernels and starts are batched with ``vmap`` in
one ``jit``, cached per kernel size, settings and batch size (rounded up to a
multiple of 16), so the fit can run at a training loop's summary cadence.

Colour (multi-channel) filters are fitted per input channel, or by their
dominant colour component (:func:`fit_conv_kernel`).
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from hybridconv.analysis import filter_stats, gabor_lm
from hybridconv.kernels import constraints
from hybridconv.kernels.gabor import centred_grid, kernel_size_2d

# Batch sizes are rounded up to a multiple of this to reuse compiled fits.
_BUCKET = 16
# Fewer cycles than this per envelope sigma (f * sigma; one octave of bandwidth
# is 0.56) make a fitted Gabor its f -> 0 limit: a Gaussian blob (even phase)
# or a Gaussian-derivative edge (odd phase) rather than a striped filter.
_BLOB_CYCLES = 0.2


class GaborFit(NamedTuple):
  """Fitted Gabor parameters per kernel; every field has the kernels' batch shape.

  ``theta`` is canonicalised to ``[0, pi)`` (``(theta + pi, psi)`` is the same
  real kernel as ``(theta, -psi)``), ``psi`` to ``[-pi, pi)``, and ``amplitude``
  is non-negative. ``offset`` is 0 unless ``fit_offset``; ``centre_x`` and
  ``centre_y`` (pixels, ``x`` right, ``y`` up, from the kernel's middle) are 0
  unless ``fit_centre``. ``r2`` is the Gabor-likeness score.
  """

  theta: Array
  frequency: Array
  sigma: Array
  gamma: Array
  psi: Array
  amplitude: Array
  offset: Array
  centre_x: Array
  centre_y: Array
  r2: Array


def _check_settings(
  kernel_size,
  num_orientations,
  frequencies,
  steps,
  refine_steps,
  frequency_range,
  sigma_range,
  gamma_range,
  fit_centre,
  fit_offset,
) -> gabor_lm.FitConfig:
  """Validates the fit settings up front and returns the hashable config."""
  if int(num_orientations) != num_orientations or num_orientations < 1:
    raise ValueError(f"num_orientations must be a positive int, got {num_orientations!r}")
  for name, value, low in (("steps", steps, 1), ("refine_steps", refine_steps, 0)):
    if int(value) != value or value < low:
      raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
  try:
    freq_bounds = constraints.frequency_bounds(*frequency_range)
    sigma_bounds = constraints.Bounds(*(sigma_range or (0.5, 2.0 * max(kernel_size))))
    gamma_bounds = constraints.Bounds(*gamma_range)
  except TypeError as error:
    raise ValueError(f"ranges must be (low, high) pairs: {error}") from None
  frequencies = tuple(float(f) for f in np.atleast_1d(np.asarray(frequencies, np.float64)))
  if not frequencies or not all(freq_bounds.low <= f <= freq_bounds.high for f in frequencies):
    raise ValueError(
      f"frequencies must be a non-empty sequence inside frequency_range "
      f"[{freq_bounds.low}, {freq_bounds.high}] cycles/pixel, got {frequencies}"
    )
  cfg = gabor_lm.FitConfig(
    kernel_size,
    int(num_orientations),
    frequencies,
    int(steps),
    int(refine_steps),
    bool(fit_centre),
    bool(fit_offset),
    freq_bounds,
    sigma_bounds,
    gamma_bounds,
  )
  needed = 2 * (cfg.num_shape + cfg.num_linear)
  if min(kernel_size) < 3 or math.prod(kernel_size) < needed:
    raise ValueError(
      f"kernels of {kernel_size[0]}x{kernel_size[1]} pixels are too small to fit a Gabor's "
      f"{cfg.num_shape + cfg.num_linear} parameters: need >= 3 pixels a side and >= {needed} "
      "pixels (fit_centre=False and fit_offset=False lower the count)"
    )
  return cfg


def fit_gabor(
  kernels: ArrayLike,
  *,
  num_orientations: int = 8,
  frequencies: tuple[float, ...] = (0.08, 0.16, 0.32),
  steps: int = 10,
  refine_steps: int = 30,
  fit_centre: bool = True,
  fit_offset: bool = False,
  frequency_range: tuple[float, float] = (0.02, 0.49),
  sigma_range: tuple[float, float] | None = None,
  gamma_range: tuple[float, float] = (0.25, 4.0),
) -> GaborFit:
  """Fits a real Gabor to each 2-D kernel (multi-start variable-projection LM).

  Args:
    kernels: ``(kh, kw, *batch)`` real kernels (typically ``(kh, kw, n)``;
      ``(kh, kw)`` for one), at least 3 pixels a side.
    num_orientations: orientations of the start grid, evenly spaced over
      ``[0, pi)``; the kernel's FFT peak is always an extra start.
    frequencies: frequencies (cycles/pixel) of the start grid.
    steps: LM iterations run from every start.
    refine_steps: further iterations for the best start of each kernel.
    fit_centre: let the Gabor's centre move within the kernel (learned filters
      are often off-centre); if False it sits at the kernel's middle, exactly
      as :func:`hybridconv.kernels.gabor.gabor_real`.
    fit_offset: add a constant term to the model.
    frequency_range: bounds on the fitted frequency, below Nyquist (0.5).
    sigma_range: bounds on sigma in pixels; default ``(0.5, 2 * max(kh, kw))``.
    gamma_range: bounds on the aspect ratio.

  Returns:
    :class:`GaborFit` with fields of shape ``batch``.

  Raises:
    ValueError: for a bad shape, non-finite values or bad settings, before
      anything is compiled.
  """
  if not isinstance(kernels, jax.core.Tracer):
    host = np.asarray(kernels)
    if host.dtype.kind not in "fiu":
      raise ValueError(f"kernels must be real numbers, got dtype {host.dtype}")
    if not np.all(np.isfinite(host)):
      raise ValueError(f"kernels contain {int(np.sum(~np.isfinite(host)))} non-finite values")
  kernels = jnp.asarray(kernels, jnp.float32)
  if kernels.ndim < 2:
    raise ValueError(f"kernels must have shape (kh, kw, *batch), got shape {kernels.shape}")
  batch = kernels.shape[2:]
  if math.prod(batch) == 0:
    raise ValueError(f"no kernels to fit: kernels has shape {kernels.shape}")
  cfg = _check_settings(
    kernel_size_2d(kernels.shape[:2]),
    num_orientations,
    frequencies,
    steps,
    refine_steps,
    frequency_range,
    sigma_range,
    gamma_range,
    fit_centre,
    fit_offset,
  )
  flat = kernels.reshape(kernels.shape[:2] + (-1,))
  n = flat.shape[-1]
  # Zero kernels pad the batch so nearby sizes share one compiled fit; they
  # cost little and are dropped again.
  flat = jnp.pad(flat, ((0, 0), (0, 0), (0, -(-n // _BUCKET) * _BUCKET - n)))
  fields = gabor_lm.compiled_fit(cfg)(flat)
  return GaborFit(**{name: value[:n].reshape(batch) for name, value in fields.items()})


def gabor_from_fit(fit: GaborFit, kernel_size: int | tuple[int, int]) -> Array:
  """Renders fitted Gabors, ``(kh, kw, *batch)``: the model that ``fit.r2`` scores.

  With zero centre and offset this is exactly ``amplitude * gabor_real(kernel_size,
  theta, frequency, sigma, gamma, psi)``.
  """
  x, y = centred_grid(kernel_size)
  expand = (slice(None), slice(None)) + (None,) * jnp.ndim(fit.theta)
  x, y = x[expand] - fit.centre_x, y[expand] - fit.centre_y
  cos_t, sin_t = jnp.cos(fit.theta), jnp.sin(fit.theta)
  x_rot = x * cos_t + y * sin_t
  y_rot = -x * sin_t + y * cos_t
  envelope = jnp.exp(-(x_rot**2 + (fit.gamma * y_rot) ** 2) / (2 * fit.sigma**2))
  carrier = jnp.cos(2 * jnp.pi * fit.frequency * x_rot + fit.psi)
  return fit.amplitude * envelope * carrier + fit.offset


class ConvGaborFit(NamedTuple):
  """Gabor fit of a conv layer's HWIO kernel.

  Attributes:
    fit: per-kernel fits, fields ``(cout,)`` for ``mode='dominant'`` or
      ``(cin, cout)`` for ``mode='per_channel'``.
    colour: ``(cin, cout)`` unit colour vector of each filter's dominant
      component, signed so that its sum is >= 0 ('dominant' mode; else None).
    colour_energy: ``(cout,)`` share of each filter's energy in its dominant
      component, 1 for a colour-separable filter ('dominant' mode; else None).
    r2_filter: ``(cout,)`` R^2 of the whole filter (all input channels) by its
      reconstruction -- Gabor x colour in 'dominant' mode, one Gabor per
      channel in 'per_channel' mode; SST sums each channel's centred squares.
  """

  fit: GaborFit
  colour: Array | None
  colour_energy: Array | None
  r2_filter: Array


def _check_hwio(kernel_hwio: ArrayLike) -> Array:
  kernel = jnp.asarray(kernel_hwio)
  if kernel.ndim != 4:
    raise ValueError(f"kernel_hwio must have shape (kh, kw, cin, cout), got shape {kernel.shape}")
  return kernel.astype(jnp.float32)


def dominant_component(kernel_hwio: ArrayLike) -> tuple[Array, Array, Array]:
  """Best colour-separable approximation of each filter (its first singular pair).

  For filter ``o`` the ``(kh*kw, cin)`` matrix ``K[..., o]`` is decomposed as
  ``U S V^T``; ``spatial = S[0] U[:, 0]`` and ``colour = V[:, 0]`` give the
  rank-1 filter ``spatial x colour`` closest to it in the L2 sense.

  Returns:
    ``spatial (kh, kw, cout)``, ``colour (cin, cout)`` unit vectors with
    non-negative sum, ``energy (cout,)`` = ``S[0]^2 / sum(S^2)`` (0 for a zero filter).
  """
  kernel = _check_hwio(kernel_hwio)
  kh, kw, cin, cout = kernel.shape
  matrices = jnp.moveaxis(kernel.reshape(kh * kw, cin, cout), -1, 0)  # (cout, kh*kw, cin)
  u, s, vt = jnp.linalg.svd(matrices, full_matrices=False)
  colour = vt[:, 0, :]
  sign = jnp.where(colour.sum(axis=1) < 0, -1.0, 1.0)
  spatial = (u[:, :, 0] * (s[:, 0] * sign)[:, None]).T.reshape(kh, kw, cout)
  total = jnp.sum(s**2, axis=1)
  energy = jnp.where(total > 0, s[:, 0] ** 2 / jnp.where(total > 0, total, 1.0), 0.0)
  return spatial, (colour * sign[:, None]).T, energy


def _filter_r2(kernel: Array, reconstruction: Array) -> Array:
  """R^2 per output filter over all input channels; 0 for a flat filter."""
  sse = jnp.sum((kernel - reconstruction) ** 2, axis=(0, 1, 2))
  sst = jnp.sum((kernel - kernel.mean(axis=(0, 1), keepdims=True)) ** 2, axis=(0, 1, 2))
  flat = sst <= gabor_lm.FLAT * jnp.sum(kernel**2, axis=(0, 1, 2)) + 1e-30
  return jnp.where(flat, 0.0, 1.0 - sse / jnp.where(flat, 1.0, sst))


def fit_conv_kernel(
  kernel_hwio: ArrayLike,
  mode: Literal["dominant", "per_channel"] = "dominant",
  **fit_options: Any,
) -> ConvGaborFit:
  """Fits Gabors to a conv kernel's filters, handling their input channels.

  Args:
    kernel_hwio: ``(kh, kw, cin, cout)`` kernel, e.g. ``KernelConv.kernel()``.
    mode: 'dominant' fits one Gabor per output filter to its dominant colour
      component (:func:`dominant_component`): the natural reading of a colour
      filter as "a spatial pattern times a colour". 'per_channel' fits every
      ``(input, output)`` slice separately.
    **fit_options: passed to :func:`fit_gabor`.

  Returns:
    :class:`ConvGaborFit`.
  """
  if mode not in ("dominant", "per_channel"):
    raise ValueError(f"mode must be 'dominant' or 'per_channel', got {mode!r}")
  kernel = _check_hwio(kernel_hwio)
  size = kernel.shape[:2]
  if mode == "per_channel":
    fit = fit_gabor(kernel, **fit_options)
    return ConvGaborFit(fit, None, None, _filter_r2(kernel, gabor_from_fit(fit, size)))
  spatial, colour, energy = dominant_component(kernel)
  fit = fit_gabor(spatial, **fit_options)
  reconstruction = gabor_from_fit(fit, size)[:, :, None, :] * colour
  return ConvGaborFit(fit, colour, energy, _filter_r2(kernel, reconstruction))


def layer_gabor_summary(
  kernel_hwio: ArrayLike,
  mode: Literal["dominant", "per_channel"] = "dominant",
  thresholds: tuple[float, ...] = (0.5, 0.8),
  **fit_options: Any,
) -> dict[str, float]:
  """A conv layer's Gabor-likeness as plain floats, ready for a logger.

  The per-filter score is :attr:`ConvGaborFit.r2_filter`; the summary is
  :func:`filter_stats.gabor_likeness` of it (``r2_mean``, ``r2_median``,
  quartiles, ``frac_r2_above_<t>`` for each threshold), plus:

  * ``frac_r2_above_0.5_blob_or_edge``: filters with R^2 > 0.5 whose fit has
    fewer than 0.2 cycles per envelope sigma -- the Gabor family's f -> 0
    limits, Gaussian blobs and Gaussian-derivative edges, which a Gabor fits
    well but are not striped. (Per channel: judged on the filter's
    highest-energy channel.)
  * ``frequency_median`` of the fits (cycles/pixel);
  * ``orientation_selectivity_mean`` and ``spectral_peak_fraction_mean`` of
    the fitted spatial kernels (:mod:`filter_stats`);
  * in 'dominant' mode, ``colour_energy_mean``: how colour-separable the
    filters are.
  """
  result = fit_conv_kernel(kernel_hwio, mode, **fit_options)
  return fit_summary(result, kernel_hwio, mode, thresholds)


def fit_summary(
  result: ConvGaborFit,
  kernel_hwio: ArrayLike,
  mode: Literal["dominant", "per_channel"] = "dominant",
  thresholds: tuple[float, ...] = (0.5, 0.8),
) -> dict[str, float]:
  """:func:`layer_gabor_summary` of an existing fit (callers that also need per-filter values)."""
  summary = filter_stats.gabor_likeness(result.r2_filter, thresholds)
  kernel = _check_hwio(kernel_hwio)
  cycles = result.fit.frequency * result.fit.sigma
  if mode == "per_channel":
    strongest = jnp.argmax(jnp.sum(kernel**2, axis=(0, 1)), axis=0)
    cycles = jnp.take_along_axis(cycles, strongest[None], axis=0)[0]
  summary["frac_r2_above_0.5_blob_or_edge"] = float(
    jnp.mean((result.r2_filter > 0.5) & (cycles < _BLOB_CYCLES))
  )
  summary["frequency_median"] = float(jnp.median(result.fit.frequency))
  spatial = kernel if mode == "per_channel" else dominant_component(kernel)[0]
  summary["orientation_selectivity_mean"] = float(
    jnp.mean(filter_stats.orientation_selectivity(spatial))
  )
  summary["spectral_peak_fraction_mean"] = float(
    jnp.mean(filter_stats.spectral_peak(spatial).peak_fraction)
  )
  if result.colour_energy is not None:
    summary["colour_energy_mean"] = float(jnp.mean(result.colour_energy))
  return summary
