"""Procedural oriented gratings: a dataset whose answer a Gabor bank can read off.

Each image is a sinusoidal grating ``0.5 + 0.5 cos(2 pi f x' + psi)`` with
random phase, optionally windowed by a Gaussian (a Gabor patch), plus Gaussian
pixel noise, quantised to uint8. The task is either the grating's orientation
or its spatial frequency, so the dataset isolates what Gabor-like first layers
are supposed to be good at, and the right answer is known exactly.

Conventions are those of :mod:`hybridconv.kernels.gabor` (the images *are*
``gabor_real`` kernels of image size): theta is the wave vector's angle
counter-clockwise from the x axis with y pointing up, frequency is in cycles
per pixel. Classes are balanced: a label is drawn uniformly, then a parameter
uniformly inside its bin.

* ``task='orientation'``: ``K`` bins of width ``pi / K`` centred on the evenly
  spaced orientations ``k pi / K`` (the ones
  :func:`hybridconv.kernels.init.evenly_spaced_orientations` gives), wrapping
  modulo pi; frequency log-uniform in ``frequency_range``.
* ``task='frequency'``: ``K`` bins evenly spaced in log-frequency over
  ``frequency_range``; orientation uniform in ``[0, pi)``.

Everything is determined by ``seed``: train and test come from two independent
streams of it.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from hybridconv.data.dataset import ArrayDataset
from hybridconv.kernels.gabor import gabor_real

TASKS = ("orientation", "frequency")
DEFAULT_FREQUENCY_RANGE = (0.05, 0.4)
_CHUNK = 4096  # images synthesised per call, to bound float32 memory


def _check_args(image_size, task, num_classes, noise, envelope_sigma, frequency_range):
  if task not in TASKS:
    raise ValueError(f"gratings task must be one of {TASKS}, got {task!r}")
  if int(image_size) != image_size or image_size < 4:
    raise ValueError(f"gratings image_size must be an int >= 4, got {image_size!r}")
  if int(num_classes) != num_classes or num_classes < 2:
    raise ValueError(f"gratings num_classes must be an int >= 2, got {num_classes!r}")
  if not noise >= 0:
    raise ValueError(f"gratings noise (pixel std in [0, 1] units) must be >= 0, got {noise!r}")
  if not envelope_sigma >= 0:
    raise ValueError(
      f"gratings envelope_sigma must be >= 0 (0 = no window), got {envelope_sigma!r}"
    )
  low, high = frequency_range
  if not 0 < low < high < 0.5:
    raise ValueError(
      f"gratings frequency_range must satisfy 0 < low < high < 0.5 (Nyquist), "
      f"got {frequency_range!r}"
    )


def sample_parameters(
  rng: np.random.Generator,
  num: int,
  *,
  task: str,
  num_classes: int,
  frequency_range: tuple[float, float],
) -> dict[str, np.ndarray]:
  """Labels and grating parameters ``theta, frequency, psi`` (float64 arrays of length num)."""
  labels = rng.integers(0, num_classes, size=num)
  log_low, log_high = math.log(frequency_range[0]), math.log(frequency_range[1])
  if task == "orientation":
    width = math.pi / num_classes
    theta = np.mod((labels + rng.uniform(-0.5, 0.5, num)) * width, math.pi)
    frequency = np.exp(rng.uniform(log_low, log_high, num))
  else:
    theta = rng.uniform(0.0, math.pi, num)
    log_width = (log_high - log_low) / num_classes
    frequency = np.exp(log_low + (labels + rng.uniform(0.0, 1.0, num)) * log_width)
  psi = rng.uniform(0.0, 2 * math.pi, num)
  return {"label": labels.astype(np.int32), "theta": theta, "frequency": frequency, "psi": psi}


def render(
  params: dict[str, np.ndarray],
  *,
  image_size: int,
  envelope_sigma: float,
  noise: float,
  rng: np.random.Generator,
) -> np.ndarray:
  """uint8 ``(N, S, S, 1)`` images of the given gratings, with pixel noise."""
  # An infinite envelope width turns gabor_real into a full-field grating.
  sigma = envelope_sigma if envelope_sigma > 0 else math.inf
  num = len(params["theta"])
  images = np.empty((num, image_size, image_size, 1), np.uint8)
  for start in range(0, num, _CHUNK):
    part = slice(start, min(start + _CHUNK, num))
    carrier = np.asarray(
      _gratings(
        image_size,
        jnp.asarray(params["theta"][part], jnp.float32),
        jnp.asarray(params["frequency"][part], jnp.float32),
        jnp.asarray(params["psi"][part], jnp.float32),
        sigma,
      )
    )
    pixels = 0.5 + 0.5 * carrier
    if noise > 0:
      pixels = pixels + rng.normal(0.0, noise, pixels.shape).astype(np.float32)
    images[part, ..., 0] = np.round(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)
  return images


@functools.partial(jax.jit, static_argnums=(0, 4))
def _gratings(image_size, theta, frequency, psi, sigma):
  kernels = gabor_real(image_size, theta, frequency, sigma, 1.0, psi)  # (S, S, n)
  return jnp.moveaxis(kernels, -1, 0)


def make_gratings(
  num: int,
  *,
  image_size: int = 28,
  task: str = "orientation",
  num_classes: int = 8,
  noise: float = 0.1,
  envelope_sigma: float = 0.0,
  frequency_range: tuple[float, float] = DEFAULT_FREQUENCY_RANGE,
  seed: int = 0,
  stream: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
  """``num`` gratings: uint8 images ``(num, S, S, 1)`` and int32 labels.

  Args:
    num: number of images.
    image_size: side ``S`` in pixels.
    task: ``'orientation'`` or ``'frequency'`` (what the label encodes).
    num_classes: number of orientation or frequency bins.
    noise: standard deviation of additive Gaussian pixel noise, in units of
      the full intensity range [0, 1] (the grating spans [0, 1] before noise).
    envelope_sigma: Gaussian window width in pixels; 0 gives full-field gratings.
    frequency_range: ``(low, high)`` cycles per pixel, below Nyquist.
    seed: dataset seed.
    stream: independent sub-stream of the seed (train 0, test 1).
  """
  _check_args(image_size, task, num_classes, noise, envelope_sigma, frequency_range)
  if int(num) != num or num < 1:
    raise ValueError(f"gratings num must be a positive int, got {num!r}")
  rng = np.random.default_rng([seed, stream])
  params = sample_parameters(
    rng, num, task=task, num_classes=num_classes, frequency_range=frequency_range
  )
  images = render(
    params, image_size=image_size, envelope_sigma=envelope_sigma, noise=noise, rng=rng
  )
  return images, params["label"]


def load_gratings_dataset(
  *,
  num_train: int,
  num_test: int,
  image_size: int = 28,
  task: str = "orientation",
  num_classes: int = 8,
  noise: float = 0.1,
  envelope_sigma: float = 0.0,
  seed: int = 0,
) -> ArrayDataset:
  """Train and test gratings from independent streams of ``seed``."""
  common = dict(
    image_size=image_size,
    task=task,
    num_classes=num_classes,
    noise=noise,
    envelope_sigma=envelope_sigma,
    seed=seed,
  )
  _check_args(image_size, task, num_classes, noise, envelope_sigma, DEFAULT_FREQUENCY_RANGE)
  train_images, train_labels = make_gratings(num_train, stream=0, **common)
  test_images, test_labels = make_gratings(num_test, stream=1, **common)
  return ArrayDataset(
    train_images,
    train_labels,
    test_images,
    test_labels,
    num_classes=num_classes,
    name=f"gratings_{task}",
  )
