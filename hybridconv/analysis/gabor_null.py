"""The null band of the Gabor-likeness score: what the fitter gives filters with no structure.

A Gabor fit's R^2 is never 0 for noise: with few pixels per fitted parameter
(25 pixels for 8 parameters at 5x5) and a smooth power spectrum, random
filters score well above zero, and how far depends on the kernel size and on
the spectrum the filters happen to have. A learned layer's score means
something only next to the score of filters that share its shape and power
spectrum but have no spatial structure -- the *surrogates* made here.

:func:`phase_randomized` keeps every filter's Fourier magnitudes and replaces
its phases: the same random phase field (the phases of the FFT of white noise,
hence Hermitian, so the result is real) is *added* to every input channel of a
filter. That is the multivariate surrogate of Prichard & Theiler (1994): each
channel keeps its power spectrum and the filter keeps its cross-channel
spectra (a colour-separable filter stays colour-separable), while the spatial
arrangement -- the thing a Gabor describes -- is destroyed.
:func:`null_scores` fits the surrogates with the same fitter and settings
(:func:`hybridconv.analysis.gabor_fit.fit_conv_kernel`) and returns their R^2.

Used by the filter summaries of a run (``gabor_fit/<layer>/null_r2_*``), the
run report's Gabor-likeness plot and the study report; keep it the one place
this is computed.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from hybridconv.analysis import gabor_fit


def phase_randomized(kernels: ArrayLike, key: Array) -> Array:
  """Surrogates of ``kernels`` with the same Fourier magnitudes and random phases.

  Args:
    kernels: ``(kh, kw, cin, cout)`` (HWIO) conv kernels, or ``(kh, kw, n)``
      single-channel kernels.
    key: a JAX PRNG key; one random phase field per output filter.

  Returns:
    float32 array of the shape of ``kernels``: every 2-D slice has exactly the
    power spectrum of the original (circular, unpadded FFT); for HWIO input the
    same phase field is added to all input channels of a filter.
  """
  kernels = jnp.asarray(kernels, jnp.float32)
  if kernels.ndim not in (3, 4):
    raise ValueError(
      f"kernels must have shape (kh, kw, cin, cout) or (kh, kw, n), got shape {kernels.shape}"
    )
  hwio = kernels if kernels.ndim == 4 else kernels[:, :, None, :]
  kh, kw, _, cout = hwio.shape
  noise = jax.random.normal(key, (kh, kw, 1, cout), jnp.float32)
  # Phases of a real signal's FFT: Hermitian-symmetric, so the product below
  # stays the FFT of a real array (its imaginary part is round-off only).
  phase = jnp.exp(1j * jnp.angle(jnp.fft.fft2(noise, axes=(0, 1))))
  surrogate = jnp.fft.ifft2(jnp.fft.fft2(hwio, axes=(0, 1)) * phase, axes=(0, 1)).real
  surrogate = surrogate.astype(jnp.float32)
  return surrogate if kernels.ndim == 4 else surrogate[:, :, 0, :]


def null_scores(
  kernels: ArrayLike,
  key: Array,
  num_draws: int = 1,
  mode: Literal["dominant", "per_channel"] = "dominant",
  **fit_options: Any,
) -> np.ndarray:
  """R^2 of Gabor fits to ``num_draws`` phase-randomised copies of each filter.

  Args:
    kernels: ``(kh, kw, cin, cout)`` (HWIO) conv kernels, e.g. a layer's free
      channels at one summary.
    key: JAX PRNG key; draw ``d`` uses ``fold_in(key, d)``.
    num_draws: surrogates per filter (>= 1). One draw of a 32-filter layer
      already gives 32 null scores, enough for its quartiles.
    mode: as in :func:`hybridconv.analysis.gabor_fit.fit_conv_kernel`; use the
      mode (and ``fit_options``) the real filters were scored with.
    **fit_options: passed to :func:`hybridconv.analysis.gabor_fit.fit_gabor`.

  Returns:
    float64 ``(num_draws, cout)`` array of whole-filter R^2
    (``ConvGaborFit.r2_filter``), comparable with the real filters' scores.
  """
  if isinstance(num_draws, bool) or int(num_draws) != num_draws or num_draws < 1:
    raise ValueError(f"num_draws must be an int >= 1, got {num_draws!r}")
  kernels = jnp.asarray(kernels, jnp.float32)
  if kernels.ndim != 4:
    raise ValueError(f"kernels must have shape (kh, kw, cin, cout), got shape {kernels.shape}")
  cout = kernels.shape[-1]
  surrogates = jnp.concatenate(
    [phase_randomized(kernels, jax.random.fold_in(key, d)) for d in range(int(num_draws))], axis=-1
  )
  # One batched fit for all draws: the fitter compiles per batch-size bucket.
  result = gabor_fit.fit_conv_kernel(surrogates, mode, **fit_options)
  return np.asarray(result.r2_filter, np.float64).reshape(int(num_draws), cout)


def null_summary(r2: ArrayLike) -> dict[str, float]:
  """Median and quartiles of null scores: the band a plot draws behind the real score."""
  values = np.asarray(r2, np.float64).ravel()
  if values.size == 0:
    raise ValueError("null_summary needs at least one score")
  q25, median, q75 = np.quantile(values, (0.25, 0.5, 0.75))
  return {"null_r2_median": float(median), "null_r2_q25": float(q25), "null_r2_q75": float(q75)}
