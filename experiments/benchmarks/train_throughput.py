"""Train-step throughput (images/s) per first-layer kernel source, JAX next to PyTorch, on CPU.

For SimpleCNN (28x28x1, Fashion-MNIST shape) and ResNet-20 (32x32x3, CIFAR
shape), each first-layer source (free, gabor, fixed, random, hybrid) is timed
with hybridconv's own train step -- ``hybridconv.training.train.train_step`` jitted with
donation exactly as ``train_and_evaluate`` does, AdamW, on a fixed random batch
-- and with the equivalent PyTorch model and loop (``torch_train.py``, run by
the PyTorch interpreter in ``.venv-torch``). Rounds are interleaved (JAX then
PyTorch for every model and source, then the next round) so that load from
other processes hits both alike; the table reports medians over rounds and the
ratio JAX / PyTorch (> 1: JAX is faster). A pause before each timed run
(``--pause``) lets the other framework's worker threads, which spin for a
while after their work ends, go idle first: without it the JAX rounds, which
follow PyTorch's, ran up to a third slower.

    .venv/bin/python experiments/benchmarks/train_throughput.py [--rounds 5] [--steps 10]

The JAX side runs on the devices ``python -m hybridconv.main`` would use:
on a CPU host one data-parallel device per core (``config.cpu_devices``;
``--cpu-devices 1`` for a single device), PyTorch on its default intra-op
threads (one per core).

Synthetic batches are fine here: the number measured is time per step, which
does not depend on the pixel values.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from configs import default  # noqa: E402
from hybridconv import host_memory, sharding  # noqa: E402
from hybridconv.training import optim, train  # noqa: E402

SOURCES = ("free", "gabor", "fixed", "random", "hybrid")
MODELS = {"simple_cnn": (28, 28, 1), "resnet20": (32, 32, 3)}
DEFAULT_TORCH_PYTHON = ROOT / ".venv-torch" / "bin" / "python"


class JaxTrainer:
  """hybridconv's jitted train step on one fixed batch."""

  def __init__(self, model: str, source: str, batch: int):
    config = default.get_config()
    config.model.name = model
    config.model.first_layer = source
    mesh = sharding.make_mesh()
    tx, schedule = optim.build_optimizer(config.optim, total_steps=1000, steps_per_epoch=100)
    model_fns, self.state = train.create_train_state(
      config, num_classes=10, image_shape=MODELS[model], mesh=mesh, tx=tx
    )
    self.step_fn = jax.jit(
      functools.partial(
        train.train_step, model_fns=model_fns, tx=tx, schedule=schedule, label_smoothing=0.0
      ),
      in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)),
      out_shardings=(sharding.replicated(mesh), sharding.replicated(mesh)),
      donate_argnums=0,
    )
    rng = np.random.default_rng(0)
    self.batch = jax.device_put(
      {
        "image": jnp.asarray(rng.normal(size=(batch, *MODELS[model])), jnp.float32),
        "label": jnp.asarray(rng.integers(0, 10, batch), jnp.int32),
      },
      sharding.batch_sharded(mesh),
    )
    self.run(2)  # compile and warm up

  def run(self, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
      self.state, metrics = self.step_fn(self.state, self.batch)
    jax.block_until_ready((self.state, metrics))
    return (time.perf_counter() - start) / steps


class TorchWorker:
  """The persistent PyTorch subprocess (torch_train.py)."""

  def __init__(self, python: pathlib.Path):
    self.process = subprocess.Popen(
      [str(python), str(pathlib.Path(__file__).with_name("torch_train.py"))],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      text=True,
    )

  def run(self, model: str, source: str, batch: int, steps: int) -> float:
    command = {"model": model, "source": source, "batch": batch, "steps": steps}
    self.process.stdin.write(json.dumps(command) + "\n")
    self.process.stdin.flush()
    line = self.process.stdout.readline()
    if not line:
      raise RuntimeError("the PyTorch worker exited; see its error above")
    return json.loads(line)["seconds_per_step"]

  def close(self):
    self.process.stdin.close()
    self.process.wait(timeout=60)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
  parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument(
    "--pause",
    type=float,
    default=1.0,
    help="seconds of idle before each timed run, so that the other "
    "framework's worker threads have stopped spinning",
  )
  parser.add_argument(
    "--torch-python",
    type=pathlib.Path,
    default=DEFAULT_TORCH_PYTHON,
    help="interpreter with torch (built by `make bench-setup`)",
  )
  parser.add_argument("--json", type=pathlib.Path, help="also write all samples here")
  parser.add_argument(
    "--cpu-devices",
    type=int,
    default=default.get_config().cpu_devices,
    help="config.cpu_devices for the JAX side (0 = one per core, as "
    "`hybridconv.main` does; 1 = a single CPU device)",
  )
  args = parser.parse_args()
  # The same host and device set-up as `python -m hybridconv.main`, before JAX starts.
  device_config = default.get_config()
  if device_config.keep_host_buffers:
    host_memory.keep_large_buffers_in_heap()
  device_config.cpu_devices = args.cpu_devices
  device_config.batch_size = args.batch
  sharding.configure_cpu_devices(device_config)

  torch_worker = TorchWorker(args.torch_python) if args.torch_python.exists() else None
  if torch_worker is None:
    print(f"note: {args.torch_python} not found, PyTorch column skipped (run `make bench-setup`)")
  keys = [(m, s) for m in args.models for s in args.sources]
  jax_trainers = {key: JaxTrainer(*key, args.batch) for key in keys}
  samples = {key: {"jax": [], "torch": []} for key in keys}
  for _ in range(args.rounds):
    for key in keys:
      time.sleep(args.pause)
      samples[key]["jax"].append(jax_trainers[key].run(args.steps))
      if torch_worker is not None:
        time.sleep(args.pause)
        samples[key]["torch"].append(torch_worker.run(*key, args.batch, args.steps))
  if torch_worker is not None:
    torch_worker.close()

  print(
    f"\ntrain step, batch {args.batch}, {jax.devices()[0].platform} "
    f"({jax.device_count()} device(s)), median of {args.rounds} rounds x {args.steps} steps"
  )
  print(f"{'model':<11} {'source':<7} {'JAX img/s':>10} {'PyTorch img/s':>14} {'JAX/PyTorch':>12}")
  for key in keys:
    jax_rate = args.batch / statistics.median(samples[key]["jax"])
    torch_rate = (
      args.batch / statistics.median(samples[key]["torch"])
      if samples[key]["torch"]
      else float("nan")
    )
    print(
      f"{key[0]:<11} {key[1]:<7} {jax_rate:>10.0f} {torch_rate:>14.0f} "
      f"{jax_rate / torch_rate:>12.2f}"
    )
  if args.json:
    args.json.write_text(
      json.dumps({f"{m}/{s}": v for (m, s), v in samples.items()} | {"batch": args.batch}, indent=1)
    )


if __name__ == "__main__":
  main()
