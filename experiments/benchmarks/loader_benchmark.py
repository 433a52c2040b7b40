"""Input pipelines against the train step they feed: images per second, side by side.

Measures, on Fashion-MNIST (Debian's IDX files):

* the device-resident pipeline, with and without augmentation (random crop with
  2-pixel zero padding + horizontal flip);
* the streaming pipeline (grain, read threads) over the same data held in host
  memory (an :class:`~hybridconv.data.ArraySource`), with and without augmentation;
* one jitted SimpleCNN train step (``hybridconv.models.build_model``, Adam,
  cross-entropy) on a fixed batch, and the same step fed by the device pipeline.

Every pipeline batch and every train step is waited for (``block_until_ready``)
before the clock moves on, so the figures are per-batch latencies turned into
rates, not asynchronous dispatch rates. Entries are timed in interleaved rounds
and the median round is reported, so that load from other processes hits all
entries alike. The ratio column is pipeline rate over
train-step rate: well above 1 means the input pipeline cannot be the
bottleneck.

    .venv/bin/python experiments/benchmarks/loader_benchmark.py [--batch 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from hybridconv.data import ArraySource, Augment, DevicePipeline, StreamingPipeline
from hybridconv.data.idx import load_idx_dataset
from hybridconv.models import build_model


def _rate(produce, steps: int, batch: int, warmup: int = 3) -> float:
  """Images per second of ``produce(step)``, waiting for each result."""
  for step in range(warmup):
    jax.block_until_ready(produce(step))
  start = time.perf_counter()
  for step in range(warmup, warmup + steps):
    jax.block_until_ready(produce(step))
  return steps * batch / (time.perf_counter() - start)


def _stream(pipeline: StreamingPipeline):
  """``train_batch`` that keeps counting across rounds, so the stream never seeks back."""
  steps = iter(range(10**9))
  return lambda step: pipeline.train_batch(next(steps))


def _train_step_fn(num_classes: int, image_shape):
  model_config = ml_collections.ConfigDict(
    dict(name="simple_cnn", first_layer="free", kernels={}, width=1.0)
  )
  model = build_model(
    model_config, num_classes=num_classes, image_shape=image_shape, rngs=nnx.Rngs(0)
  )
  optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer, batch):
    def loss_fn(model):
      logits = model(batch["image"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  return lambda batch: train_step(model, optimizer, batch)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--steps", type=int, default=200, help="timed batches per pipeline round")
  parser.add_argument("--train_steps", type=int, default=10, help="timed train steps per round")
  parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median kept)")
  parser.add_argument("--data_dir", default="", help="IDX directory (default: Debian's)")
  parser.add_argument("--json", default="", help="also write the figures to this file")
  args = parser.parse_args()

  dataset = load_idx_dataset("fashion_mnist", args.data_dir)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  augment = Augment(crop_padding=2, horizontal_flip=True)
  common = dict(global_batch_size=args.batch, eval_batch_size=1000, seed=0, mesh=mesh)
  train_source = ArraySource(dataset.train_images, dataset.train_labels)
  test_source = ArraySource(dataset.test_images, dataset.test_labels)

  producers, batches_per_round = {}, {}
  for label, config in (("no augmentation", Augment()), ("crop 2 + flip", augment)):
    device = DevicePipeline(dataset, augment_config=config, **common)
    producers[f"device pipeline, {label}"] = device.train_batch
    streaming = StreamingPipeline(
      train_source, test_source, num_classes=dataset.num_classes, augment_config=config, **common
    )
    producers[f"streaming pipeline (grain, in-memory source), {label}"] = _stream(streaming)
  device = DevicePipeline(dataset, augment_config=augment, **common)
  train_step = _train_step_fn(dataset.num_classes, dataset.image_shape)
  fixed_batch = device.train_batch(0)
  train_name = "train step alone (SimpleCNN, fixed batch)"
  producers[train_name] = lambda step: train_step(fixed_batch)
  producers["train step fed by the device pipeline (crop 2 + flip)"] = lambda step: train_step(
    device.train_batch(step)
  )
  for name in producers:
    batches_per_round[name] = args.train_steps if "train step" in name else args.steps

  # Interleaved rounds, so that load from other processes hits every entry alike.
  samples = {name: [] for name in producers}
  for _ in range(args.rounds):
    for name, produce in producers.items():
      samples[name].append(_rate(produce, batches_per_round[name], args.batch))
  rates = {name: statistics.median(values) for name, values in samples.items()}
  train_rate = rates[train_name]

  print(
    f"\njax {jax.__version__}, {jax.device_count()} x {jax.devices()[0].device_kind}, "
    f"batch {args.batch}, Fashion-MNIST 28x28x1\n"
  )
  print(f"| {'what':<62} | {'images/s':>10} | {'/ train step':>12} |")
  print(f"|{'-' * 64}|{'-' * 11}:|{'-' * 13}:|")
  for name, rate in rates.items():
    print(f"| {name:<62} | {rate:>10,.0f} | {rate / train_rate:>12.1f} |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(
        {
          "device": str(jax.devices()[0].device_kind),
          "batch": args.batch,
          "images_per_s": rates,
          "samples": samples,
        },
        f,
        indent=2,
      )


if __name__ == "__main__":
  main()
