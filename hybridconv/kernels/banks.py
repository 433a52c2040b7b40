"""Named banks of fixed spatial filters: the registry behind ``Fixed(bank=...)``.

``make_bank(name, kernel_size, **options)`` returns float32 filters of shape
``(kh, kw, n)`` on the project's exactly centred pixel grid (``x`` right, ``y``
up; see :mod:`hybridconv.kernels.gabor`), meant to be applied by
cross-correlation as ``lax.conv_general_dilated`` does. The banks:

==========================  ====================================================
``gabor``                   orientations x octave-spaced scales x phases
``gaussian_derivatives``    all d^(i+j)/dx^i dy^j of a Gaussian, i + j <= order
``log`` / ``dog``           Laplacian / difference of Gaussians, one per sigma
``dct``                     orthonormal 2-D DCT-II basis, zig-zag order
``classic``                 identity, blurs, sharpen, Sobel/Prewitt/Scharr,
                            Laplacian, emboss (each also a one-filter bank)
``classic_scales``          the classic kernels, then Gaussian-smoothed at
                            larger scales (32 filters by default)
``random``                  He-normal random filters from a seed
``user``                    an array supplied by the user
==========================  ====================================================

Options are keyword arguments of the bank's function (listed by
``bank_options(name)``); unknown names and invalid values raise one
``ValueError`` that says what is allowed.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from hybridconv.kernels import classic, dct, gaussian, random_kernels
from hybridconv.kernels.gabor import gabor_real, kernel_size_2d
from hybridconv.kernels.init import grid_init
from hybridconv.kernels.options import check_bool, check_float, check_float_tuple, check_int


def gabor_bank(
  kernel_size,
  *,
  num_orientations: int = 8,
  num_scales: int = 2,
  highest_frequency: float = 0.25,
  phases=(0.0, -math.pi / 2),
  bandwidth: float = 1.0,
  gamma: float = 1.0,
  zero_mean: bool = True,
  unit_norm: bool = False,
) -> Array:
  """A fixed Gabor filter bank: every orientation at every scale and phase.

  Orientations are ``k pi / num_orientations`` (wave vector counter-clockwise
  from ``x``; ``theta = 0`` gives vertical stripes), frequencies are
  ``highest_frequency / 2**s`` (one octave apart) and each width follows from
  the frequency and the bandwidth (:func:`~hybridconv.kernels.init.sigma_from_bandwidth`).
  The default phases ``(0, -pi/2)`` give quadrature pairs: an even (cosine)
  filter and an odd (sine) one whose positive lobe lies where the wave vector
  points.

  Args:
    kernel_size: ``k`` or ``(kh, kw)``.
    num_orientations: orientations evenly spaced over ``[0, pi)``.
    num_scales: octave-spaced frequencies, highest first.
    highest_frequency: cycles per pixel, in ``(0, 0.5)`` (below Nyquist).
    phases: carrier phases in radians (a number or a sequence).
    bandwidth: half-magnitude frequency bandwidth in octaves (> 0).
    gamma: envelope aspect ratio (> 0).
    zero_mean: remove each filter's DC component.
    unit_norm: scale each filter to unit L2 norm.

  Returns:
    float32 ``(kh, kw, num_scales * num_orientations * len(phases))``; the
    phase varies fastest, then the orientation, then the scale (quadrature
    pairs are neighbours).
  """
  num_orientations = check_int("num_orientations", num_orientations, minimum=1)
  num_scales = check_int("num_scales", num_scales, minimum=1)
  highest_frequency = check_float("highest_frequency", highest_frequency, positive=True)
  if highest_frequency >= 0.5:
    raise ValueError(
      f"option highest_frequency must be below the Nyquist limit 0.5 "
      f"cycles/pixel, got {highest_frequency}"
    )
  phases = check_float_tuple("phases", phases)
  bandwidth = check_float("bandwidth", bandwidth, positive=True)
  gamma = check_float("gamma", gamma, positive=True)
  zero_mean = check_bool("zero_mean", zero_mean)
  unit_norm = check_bool("unit_norm", unit_norm)
  kh, kw = kernel_size_2d(kernel_size)
  params = grid_init(
    num_orientations * num_scales,
    num_orientations=num_orientations,
    highest_frequency=highest_frequency,
    bandwidth=bandwidth,
    gamma=gamma,
  )
  # (filters, 1) against (1, phases): the phase becomes the fastest axis.
  column = {k: params[k][:, None] for k in ("theta", "frequency", "sigma", "gamma")}
  kernels = gabor_real(
    (kh, kw),
    column["theta"],
    column["frequency"],
    column["sigma"],
    column["gamma"],
    jnp.asarray(phases, jnp.float32)[None, :],
    zero_mean=zero_mean,
    unit_norm=unit_norm,
  )
  return kernels.reshape(kh, kw, -1)


def user_bank(kernel_size, *, array=None) -> Array:
  """Filters supplied by the user, checked against ``kernel_size``.

  Args:
    kernel_size: ``k`` or ``(kh, kw)``; the array's spatial shape must match.
    array: concrete array-like of shape ``(kh, kw)`` (one filter) or
      ``(kh, kw, n)``, finite values only. Indexed ``[row, column]`` and used
      as given (applied by cross-correlation, no flip).

  Returns:
    float32 ``(kh, kw, n)``.
  """
  if array is None:
    raise ValueError("the 'user' bank needs the option array=<(kh, kw) or (kh, kw, n) array>")
  kh, kw = kernel_size_2d(kernel_size)
  try:
    values = np.asarray(array, dtype=np.float64)
  except (TypeError, ValueError, jax.errors.TracerArrayConversionError) as e:
    raise ValueError(
      f"option array must be a concrete numeric array, got {type(array)}: {e}"
    ) from e
  if values.ndim == 2:
    values = values[:, :, None]
  if values.ndim != 3 or values.shape[:2] != (kh, kw) or values.shape[2] < 1:
    raise ValueError(
      f"option array must have shape ({kh}, {kw}) or ({kh}, {kw}, n) for "
      f"kernel_size={kernel_size!r}, got shape {np.shape(array)}"
    )
  if not np.all(np.isfinite(values)):
    raise ValueError(
      f"option array must be finite; it has {np.sum(~np.isfinite(values))} NaN or infinite values"
    )
  return jnp.asarray(values, jnp.float32)


def classic_bank(kernel_size, *, names=classic.CLASSIC_NAMES) -> Array:
  """The classic image-processing kernels stacked, in the order of ``names``.

  Args:
    kernel_size: ``k`` or ``(kh, kw)``; each kernel's size rules apply (the
      full set needs odd sizes >= 3), see :mod:`hybridconv.kernels.classic`.
    names: which kernels, from :data:`hybridconv.kernels.classic.CLASSIC_NAMES`
      (default: all twelve).

  Returns:
    float32 ``(kh, kw, len(names))``.
  """
  if isinstance(names, str):
    names = (names,)
  unknown = [n for n in names if n not in classic.CLASSIC_KERNELS]
  if not names or unknown:
    raise ValueError(
      f"option names must be a non-empty sequence of {list(classic.CLASSIC_NAMES)}, got {names!r}"
    )
  return jnp.asarray(np.stack([classic.CLASSIC_KERNELS[n](kernel_size) for n in names], -1))


# Identity and sharpen smoothed by a Gaussian are the Gaussian blur and a
# blur-plus-Laplacian mix, both already in the bank: left out above scale 0.
_REDUNDANT_WHEN_SMOOTHED = ("identity", "sharpen")


def classic_scales_bank(kernel_size, *, sigmas=(1.0, 2.0)) -> Array:
  """The classic kernels at several scales: as they are, then smoothed by Gaussians.

  The scale-space way to take an operator to a larger scale (Lindeberg):
  convolve it with a Gaussian of standard deviation ``sigma``. Scale 0 is the
  twelve kernels of :func:`classic_bank`; every ``sigma`` adds the ten that are
  not redundant when smoothed (all but identity and sharpen). The default
  gives 12 + 10 + 10 = 32 filters, the width of a SimpleCNN first layer, so a
  "classic kernels" arm matches the other arms' width without repeating a
  filter.

  Args:
    kernel_size: odd ``k`` or ``(kh, kw)``, at least 3.
    sigmas: Gaussian standard deviations in pixels (each > 0).

  Returns:
    float32 ``(kh, kw, 12 + 10 * len(sigmas))``, scale varying slowest.
  """
  kh, kw = kernel_size_2d(kernel_size)
  sigmas = check_float_tuple("sigmas", sigmas, positive=True)
  base = classic_bank((kh, kw))
  filters = [base]
  keep = [i for i, n in enumerate(classic.CLASSIC_NAMES) if n not in _REDUNDANT_WHEN_SMOOTHED]
  y, x = np.mgrid[-(kh // 2) : kh // 2 + 1, -(kw // 2) : kw // 2 + 1]
  for sigma in sigmas:
    gaussian_kernel = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    gaussian_kernel /= gaussian_kernel.sum()
    gaussian_kernel = jnp.asarray(gaussian_kernel, jnp.float32)
    filters.append(
      jnp.stack(
        [jax.scipy.signal.convolve2d(base[..., i], gaussian_kernel, mode="same") for i in keep], -1
      )
    )
  return jnp.concatenate(filters, -1).astype(jnp.float32)


def _one_classic(name: str, kernel_size) -> Array:
  """The classic kernel ``name`` as a one-filter bank ``(kh, kw, 1)``."""
  return jnp.asarray(classic.CLASSIC_KERNELS[name](kernel_size))[:, :, None]


BANKS: dict[str, Callable[..., Array]] = {
  "gabor": gabor_bank,
  "gaussian_derivatives": gaussian.gaussian_derivative_bank,
  "log": gaussian.laplacian_of_gaussian_bank,
  "dog": gaussian.difference_of_gaussians_bank,
  "master_key": gaussian.master_key_bank,
  "dct": dct.dct_bank,
  "classic": classic_bank,
  "classic_scales": classic_scales_bank,
  "random": random_kernels.random_bank,
  "user": user_bank,
  **{name: functools.partial(_one_classic, name) for name in classic.CLASSIC_NAMES},
}


def _builder(name: str) -> Callable[..., Array]:
  if not isinstance(name, str) or name not in BANKS:
    raise ValueError(f"unknown kernel bank {name!r}; known banks: {', '.join(BANKS)}")
  return BANKS[name]


def bank_options(name: str) -> dict[str, object]:
  """The options of bank ``name`` and their defaults (``inspect.Parameter.empty`` if none)."""
  parameters = inspect.signature(_builder(name)).parameters.values()
  return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def make_bank(name: str, kernel_size, **options) -> Array:
  """The filters of bank ``name`` at ``kernel_size``.

  Args:
    name: a key of :data:`BANKS`.
    kernel_size: ``k`` or ``(kh, kw)``.
    **options: the bank's keyword options (see :func:`bank_options`).

  Returns:
    float32 ``(kh, kw, n)`` array.

  Raises:
    ValueError: unknown bank or option, invalid option value, or a size the
      bank cannot be built at.
  """
  builder = _builder(name)
  allowed = bank_options(name)
  unknown = sorted(set(options) - set(allowed))
  if unknown:
    raise ValueError(
      f"unknown option(s) {unknown} for kernel bank {name!r}; "
      f"allowed: {sorted(allowed) if allowed else 'none'}"
    )
  return jnp.asarray(builder(kernel_size, **options), jnp.float32)


def bank_size(name: str, kernel_size, **options) -> int:
  """Number of filters ``n`` that :func:`make_bank` would return, without computing them.

  The bank is only traced (``jax.eval_shape``), so the options are validated
  exactly as by :func:`make_bank` and the count can never disagree with it.
  """
  shape = jax.eval_shape(lambda: make_bank(name, kernel_size, **options)).shape
  return int(shape[-1])
