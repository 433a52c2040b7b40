"""Speed and known-answer accuracy of the Gabor fitter on this machine.

Run from the repository root:

  python experiments/benchmarks/gabor_fit_benchmark.py

Cases: an AlexNet-style first layer (96 filters of 11x11x3) in 'dominant' mode
(96 fits) and 'per_channel' mode (288 fits), and 64 kernels of 5x5x1. For
each: the first call (trace + compile + run) and the median of later calls.
Accuracy: noisy synthetic Gabors (made with ``gabor_real``, noise of
``--noise`` times the amplitude) and white noise, fitted with the defaults.
"""

from __future__ import annotations

import os
import sys
import time

import jax
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from hybridconv.analysis import gabor_fit  # noqa: E402
from hybridconv.kernels.gabor import gabor_real  # noqa: E402
from hybridconv.kernels.init import sigma_from_bandwidth  # noqa: E402

_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls after the first (compiling) one.")
_NOISE = flags.DEFINE_float("noise", 0.05, "Noise standard deviation relative to the amplitude.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the synthetic kernels.")


def _time(fn, *args, repeats: int) -> tuple[float, float, float]:
  """Wall seconds of the first call, median wall and CPU seconds of later calls.

  CPU time (all threads of this process) is reported too because wall time on
  a shared machine depends on what else runs.
  """
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  first = time.perf_counter() - start
  walls, cpus = [], []
  for _ in range(repeats):
    start, start_cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(*args))
    walls.append(time.perf_counter() - start)
    cpus.append(time.process_time() - start_cpu)
  return first, float(np.median(walls)), float(np.median(cpus))


def _synthetic(rng, n: int, size: int, noise: float):
  """Noisy Gabors with parameters a ``size``-pixel filter can show; returns (kernels, truth).

  Frequencies are log-uniform from ``max(0.08, 0.75 / size)`` (at least 3/4 of a
  wavelength across the kernel: 0.15 at 5x5) to 0.3 cycles/pixel.
  """
  frequency = np.exp(rng.uniform(np.log(max(0.08, 0.75 / size)), np.log(0.3), n))
  sigma = np.clip(
    np.asarray(sigma_from_bandwidth(frequency, 1.0)) * rng.uniform(0.8, 1.3, n), 1.2, size / 3
  )
  theta = rng.uniform(0, np.pi, n)
  amplitude = rng.uniform(0.5, 2.0, n)
  clean = (
    np.asarray(
      gabor_real(
        size, theta, frequency, sigma, rng.uniform(0.6, 1.5, n), rng.uniform(-np.pi, np.pi, n)
      )
    )
    * amplitude
  )
  return clean + noise * amplitude * rng.standard_normal(clean.shape), (theta, frequency)


def _accuracy(rng, n: int, size: int, noise: float) -> str:
  kernels, (theta, frequency) = _synthetic(rng, n, size, noise)
  fit = gabor_fit.fit_gabor(kernels)
  angle = np.degrees(np.abs(np.mod(np.asarray(fit.theta) - theta + np.pi / 2, np.pi) - np.pi / 2))
  freq = np.abs(np.asarray(fit.frequency) / frequency - 1) * 100
  noise_r2 = np.asarray(gabor_fit.fit_gabor(rng.standard_normal((size, size, n))).r2)
  return (
    f"{size}x{size}, n={n}, noise {noise:.0%}: orientation error median "
    f"{np.median(angle):.2f} max {angle.max():.2f} deg; frequency error median "
    f"{np.median(freq):.1f} max "
    f"{freq.max():.1f} %; R^2 median {np.median(fit.r2):.3f} min {np.min(fit.r2):.3f}; "
    f"white noise R^2 median {np.median(noise_r2):.3f} max {noise_r2.max():.3f}"
  )


def main(argv):
  del argv
  rng = np.random.default_rng(_SEED.value)
  repeats = _REPEATS.value
  print(
    f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores, "
    f"load average {os.getloadavg()[0]:.1f}"
  )
  layer = rng.standard_normal((11, 11, 3, 96)).astype(np.float32)
  small = rng.standard_normal((5, 5, 64)).astype(np.float32)
  cases = [
    (
      "96 filters 11x11x3, mode='dominant' (96 fits)",
      lambda k: gabor_fit.fit_conv_kernel(k, "dominant"),
      layer,
    ),
    (
      "96 filters 11x11x3, mode='per_channel' (288 fits)",
      lambda k: gabor_fit.fit_conv_kernel(k, "per_channel"),
      layer,
    ),
    ("64 kernels 5x5x1 (64 fits)", gabor_fit.fit_gabor, small),
  ]
  for name, fn, data in cases:
    first, run, cpu = _time(fn, data, repeats=repeats)
    print(
      f"{name}: first call (compile + run) {first:.2f} s, compile ~{first - run:.2f} s, "
      f"run {run:.3f} s wall, {cpu:.3f} s CPU (medians of {repeats})"
    )
  print("known-answer accuracy:")
  print("  " + _accuracy(rng, 96, 11, _NOISE.value))
  print("  " + _accuracy(rng, 64, 5, _NOISE.value))


if __name__ == "__main__":
  app.run(main)
