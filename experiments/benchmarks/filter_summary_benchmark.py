"""Time of one filter summary (``hybridconv.tracking.FilterTracker``) on this machine.

Run from the repository root:

  python experiments/benchmarks/filter_summary_benchmark.py

Cases: SimpleCNN (28x28x1, conv1 5x5x1x32 and conv2 5x5x32x64) with a free
and with a hybrid first layer, an AlexNet first layer alone (11x11x3, 96
filters, stride 4), free and hybrid, and whole zoo models (AlexNet: conv1
11x11 and conv2 5x5 are fitted; ResNet-18 and ResNet-20: 3x3 layers are
shown but not fitted, ResNet-18's 7x7 conv1 is); each without and with the
Gabor fit, and with the fit plus its null band (one phase-randomised
surrogate per free filter, fitted too: ``null_draws=1``, the default).
For each: the first call (which compiles the fit, once per kernel size and
batch bucket) and the median of later calls, wall and CPU seconds, with the
load average, because the machine is shared.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from absl import app, flags
from flax import nnx

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from hybridconv import tracking  # noqa: E402
from hybridconv.models import MODELS, SimpleCNN  # noqa: E402
from hybridconv.nn import KernelConv  # noqa: E402

_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls after the first one.")


class AlexNetConv1(nnx.Module):
  """AlexNet's first layer alone: what filter summaries of AlexNet spend on conv1."""

  def __init__(self, source: str):
    self.conv1 = KernelConv(3, 96, 11, strides=4, source=source, rngs=nnx.Rngs(0))


def _time(model, gabor_fit: bool, null_draws: int, repeats: int) -> tuple[float, float, float]:
  tracker = tracking.FilterTracker(
    tracking.MemoryLogger(), gabor_fit=gabor_fit, null_draws=null_draws
  )
  start = time.perf_counter()
  tracker(model, 0)
  first = time.perf_counter() - start
  walls, cpus = [], []
  for step in range(1, repeats + 1):
    wall, cpu = time.perf_counter(), time.process_time()
    tracker(model, step)
    walls.append(time.perf_counter() - wall)
    cpus.append(time.process_time() - cpu)
  return first, float(np.median(walls)), float(np.median(cpus))


def main(argv):
  del argv
  cases = {
    "simple_cnn free": lambda: SimpleCNN(10, (28, 28, 1), first_layer="free", rngs=nnx.Rngs(0)),
    "simple_cnn hybrid": lambda: SimpleCNN(10, (28, 28, 1), first_layer="hybrid", rngs=nnx.Rngs(0)),
    "alexnet conv1 free": lambda: AlexNetConv1("free"),
    "alexnet conv1 hybrid": lambda: AlexNetConv1("hybrid"),
    "alexnet (whole)": lambda: MODELS["alexnet"](1000, (224, 224, 3), rngs=nnx.Rngs(0)),
    "resnet18 (whole)": lambda: MODELS["resnet18"](1000, (224, 224, 3), rngs=nnx.Rngs(0)),
    "resnet20 (whole)": lambda: MODELS["resnet20"](10, (32, 32, 3), rngs=nnx.Rngs(0)),
  }
  print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
  print(f"{'case':24s} {'gabor fit':10s} {'first s':>8s} {'median s':>9s} {'cpu s':>7s}")
  for name, build in cases.items():
    model = build()
    for label, gabor_fit, null_draws in (("no", False, 0), ("fit", True, 0), ("fit+null", True, 1)):
      first, wall, cpu = _time(model, gabor_fit, null_draws, _REPEATS.value)
      print(f"{name:24s} {label:10s} {first:8.2f} {wall:9.3f} {cpu:7.3f}")
  print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
  app.run(main)
