"""Forward+backward time of each kernel source against a free conv, side by side.

Shapes (batch 128 by default): AlexNet conv1 (11x11 stride 4, 224x224x3 -> 64),
CIFAR-style 7x7 (32x32x3 -> 64) and 3x3 (32x32x64 -> 64). For every shape the
sources are timed in interleaved rounds (free, gabor, fixed, hybrid, random,
free, gabor, ...) so machine noise hits them alike; the table reports medians
and ratios to `free`. Gradients are taken as training takes them: w.r.t.
the parameters only for first-layer shapes (3 input channels), w.r.t. the
parameters and the input for the middle-layer 3x3 shape; a fixed or random
first layer therefore has no backward pass at all. The PyTorch peers --
`torch.nn.Conv2d` and the GaborNet layer (PyPI `gabornet` 0.2.0, the Gabor
layer a user would otherwise pick) -- run in a subprocess of the PyTorch
interpreter (`make bench-setup` builds `.venv-torch`; torch's CPU wheel here
exists for Python 3.11 only) right after the JAX rounds of the same shape.

    .venv/bin/python experiments/benchmarks/layer_benchmark.py [--batch 128] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
from flax import nnx

from hybridconv.nn import KernelConv, sources

ROOT = pathlib.Path(__file__).resolve().parents[2]
TORCH_PYTHON = ROOT / ".venv-torch" / "bin" / "python"

# name: (input HWC, out channels, kernel, stride, padding, input gradient needed)
# A first layer (3 input channels) needs no gradient w.r.t. its input in
# training, a middle layer does; each shape is timed the way training uses it.
SHAPES = {
  "alexnet_conv1_11x11s4": ((224, 224, 3), 64, 11, 4, 2, False),
  "cifar_7x7": ((32, 32, 3), 64, 7, 1, 3, False),
  "cifar_3x3": ((32, 32, 64), 64, 3, 1, 1, True),
}

SOURCES = {
  "free": sources.Free(),
  "gabor": sources.Gabor(),
  "fixed": sources.Fixed("gabor", options={"num_orientations": 8, "num_scales": 4}),
  "hybrid": sources.Hybrid(
    (
      (sources.Gabor(), 16),
      (sources.Fixed("gabor", options={"num_orientations": 8, "num_scales": 1}), 16),
      (sources.Free(), 32),
    )
  ),
  "random": sources.Random(seed=0),
}


def _forward_backward(layer: KernelConv, input_grad: bool):
  """Jitted step: gradients of a squared error of the output w.r.t. every Param (and the input)."""
  graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

  @jax.jit
  def step(params, rest, x, cotangent):
    def loss(params, x):
      # A squared error needs the forward output in the backward pass, as the
      # next layer does in training (a linear loss would let XLA skip the conv).
      return 0.5 * jnp.sum((nnx.merge(graphdef, params, rest)(x) - cotangent) ** 2)

    return jax.grad(loss, argnums=(0, 1) if input_grad else 0)(params, x)

  return lambda x, ct: step(params, rest, x, ct)


def _time_once(fn, *args) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - start


def bench_jax(shape_name: str, batch: int, rounds: int) -> dict[str, float]:
  (h, w, cin), cout, k, stride, pad, input_grad = SHAPES[shape_name]
  x = jax.random.normal(jax.random.key(0), (batch, h, w, cin))
  steps = {}
  for name, source in SOURCES.items():
    layer = KernelConv(cin, cout, k, strides=stride, padding=pad, source=source, rngs=nnx.Rngs(0))
    steps[name] = _forward_backward(layer, input_grad)
  out_shape = jax.eval_shape(
    lambda: KernelConv(cin, cout, k, strides=stride, padding=pad, rngs=nnx.Rngs(0))(x)
  ).shape
  cotangent = jax.random.normal(jax.random.key(1), out_shape)
  for fn in steps.values():  # compile and warm up
    _time_once(fn, x, cotangent)
  times = {name: [] for name in steps}
  for _ in range(rounds):
    for name, fn in steps.items():
      times[name].append(_time_once(fn, x, cotangent))
  return {name: statistics.median(t) for name, t in times.items()}


def bench_torch(shape_name: str, batch: int, rounds: int) -> dict[str, float] | str:
  if not TORCH_PYTHON.exists():
    return f"skipped: {TORCH_PYTHON} missing (run `make bench-setup`)"
  (h, w, cin), cout, k, stride, pad, input_grad = SHAPES[shape_name]
  command = [
    str(TORCH_PYTHON),
    str(pathlib.Path(__file__).with_name("torch_layers.py")),
    "--batch",
    str(batch),
    "--rounds",
    str(rounds),
    "--hw",
    str(h),
    str(w),
    "--cin",
    str(cin),
    "--cout",
    str(cout),
    "--kernel",
    str(k),
    "--stride",
    str(stride),
    "--padding",
    str(pad),
  ]
  if input_grad:
    command.append("--input-grad")
  result = subprocess.run(command, capture_output=True, text=True, check=False)
  if result.returncode != 0:
    return "failed: " + result.stderr.strip().splitlines()[-1]
  return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
  args = parser.parse_args()
  print(
    f"jax {jax.__version__} on {jax.devices()[0].platform}, batch {args.batch}, "
    f"median of {args.rounds} interleaved rounds, forward+backward"
  )
  rows = []
  for shape_name in args.shapes:
    jax_times = bench_jax(shape_name, args.batch, args.rounds)
    torch_times = bench_torch(shape_name, args.batch, args.rounds)
    free = jax_times["free"]
    for name, seconds in jax_times.items():
      rows.append((shape_name, f"hybridconv {name}", seconds * 1e3, seconds / free))
    if isinstance(torch_times, dict):
      for name, seconds in torch_times.items():
        rows.append((shape_name, f"torch {name}", seconds * 1e3, seconds / free))
    else:
      rows.append((shape_name, f"torch peers {torch_times}", float("nan"), float("nan")))
  print(f"\n{'shape':24s} {'layer':28s} {'ms':>9s} {'x free':>8s}")
  for shape_name, name, ms, ratio in rows:
    print(f"{shape_name:24s} {name:28s} {ms:9.1f} {ratio:8.3f}")
  sys.stdout.flush()


if __name__ == "__main__":
  main()
