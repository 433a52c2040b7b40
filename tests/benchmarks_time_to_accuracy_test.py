"""experiments/benchmarks/time_to_accuracy.py: its helpers, and the JAX side on a tiny IDX set.

The real measurement takes minutes to hours; these check the parts that decide
its number: which eval counts as reaching the target, that the eval times
match metrics.jsonl and arrive promptly through hybridconv's background
writer, and that the PyTorch peer's schedule, data reader and normalisation
are hybridconv's (its pure helpers import without torch).
"""

from __future__ import annotations

import gzip
import math
import pathlib
import sys
import time

import numpy as np
import pytest

from configs import fashion_mnist
from hybridconv.data import augment, idx
from hybridconv.tracking import writers
from hybridconv.training import optim, train

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "benchmarks"
sys.path.append(str(BENCHMARKS))

import time_to_accuracy as tta  # noqa: E402
import torch_time_to_accuracy as peer  # noqa: E402


def _evals(*accuracies):
  return [
    {"step": 10 * (i + 1), "epoch": 0.5 * (i + 1), "seconds": 3.0 * (i + 1), "accuracy": a}
    for i, a in enumerate(accuracies)
  ]


def test_first_crossing_is_the_first_eval_at_or_above_target():
  evals = _evals(0.80, 0.919, 0.92, 0.91, 0.93)
  assert tta.first_crossing(evals, 0.92)["step"] == 30  # equal counts; later ones do not
  assert tta.first_crossing(evals, 0.93)["step"] == 50
  assert tta.first_crossing(evals, 0.931) is None
  assert tta.first_crossing([], 0.5) is None
  assert peer.first_crossing(evals, 0.92) == tta.first_crossing(evals, 0.92)


def test_eval_events_join_metrics_and_clock():
  metrics = [
    {"step": 50, "train/loss": 1.0, "epoch": 0.25},
    {"step": 100, "train/loss": 0.5, "epoch": 0.5},
    {"step": 100, "eval/accuracy": 0.7, "eval/loss": 0.9},
    {"step": 200, "train/loss": 0.4, "epoch": 1.0},
    {"step": 200, "eval/accuracy": 0.8, "eval/loss": 0.6},
  ]
  clock = [
    {"step": 100, "seconds": 12.5, "accuracy": 0.7},
    {"step": 200, "seconds": 20.0, "accuracy": 0.8},
  ]
  assert tta.eval_events(metrics, clock) == [
    {"step": 100, "epoch": 0.5, "accuracy": 0.7, "seconds": 12.5},
    {"step": 200, "epoch": 1.0, "accuracy": 0.8, "seconds": 20.0},
  ]
  with pytest.raises(RuntimeError, match="do not match"):
    tta.eval_events(metrics, clock[:1])  # an event the clock never saw
  with pytest.raises(RuntimeError, match="do not match"):
    tta.eval_events(metrics, [clock[0], clock[1] | {"accuracy": 0.81}])


def test_background_writer_stamps_events_promptly():
  """The clock runs on BackgroundWriter's thread; a busy training thread must not delay it."""
  start = time.perf_counter()
  clock = tta.EvalClock(start)
  background = writers.BackgroundWriter(clock)
  sent = time.perf_counter() - start
  background.write_scalars(7, {"eval/accuracy": 0.5})
  background.write_scalars(7, {"train/loss": 1.0})  # not an eval event: ignored
  busy_until = time.perf_counter() + 0.5
  while time.perf_counter() < busy_until:  # pure Python: holds the GIL but for switches
    sum(range(1000))
  background.close()
  assert len(clock.events) == 1 and clock.events[0]["step"] == 7
  assert clock.thread.startswith("writer-")
  assert 0 <= clock.events[0]["seconds"] - sent < 0.25


def test_torch_spec_mirrors_the_config_and_refuses_what_it_cannot():
  spec = tta.torch_spec(
    tta.build_config("gabor,resnet20", eval_every=0.5, max_epochs=2),
    num_train=60_000,
    target=0.9,
    stop_at_target=False,
    init="hybridconv",
  )
  # 468 steps an epoch: the durations arrive in steps, converted by hybridconv's rules
  assert (spec["model"], spec["source"], spec["total_steps"], spec["eval_every_steps"]) == (
    "resnet20",
    "gabor",
    936,
    234,
  )
  assert spec["warmup_steps"] == 468  # the resnet20 variant warms up for one epoch
  assert (spec["crop_padding"], spec["horizontal_flip"]) == (2, True)
  assert spec["optim"]["name"] == "sgd" and spec["optim"]["nesterov"] is True
  assert spec["optim"]["kernel_lr_multiplier"] == 10.0
  config = fashion_mnist.get_config("hybrid")
  config.model.width = 0.5
  with pytest.raises(ValueError, match="model.width"):
    tta.torch_spec(config, num_train=60_000, target=0.9, stop_at_target=False, init="hybridconv")


@pytest.mark.parametrize(
  "variant, schedule, total_steps",
  [
    ("hybrid", "cosine", 1404),
    ("hybrid,long", "cosine", 9360),
    ("free,resnet20", "cosine", 4680),
    ("hybrid", "step", 1404),
    ("hybrid", "constant", 1404),
    ("hybrid", "cosine", 50),
  ],
)
@pytest.mark.slow
def test_peer_learning_rate_is_hybridconvs(variant, schedule, total_steps):
  config = fashion_mnist.get_config(variant)
  config.optim.schedule = schedule
  config.optim.step_at = ("1 epoch", "2 epochs")
  config.optim.end_learning_rate_factor = 0.05
  config.train_for = f"{total_steps} steps"
  steps = np.arange(total_steps + 3)
  clock = train.run_clock(config, 468)
  expected = optim.learning_rate_schedule(config.optim, clock)(steps)
  spec = tta.torch_spec(
    config, num_train=60_000, target=0.9, stop_at_target=False, init="hybridconv"
  )
  got = [peer.learning_rate(int(s), spec) for s in steps]
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9)


def _write_idx(path: pathlib.Path, array: np.ndarray, magic: int) -> None:
  header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def tiny_idx(tmp_path_factory):
  """512 training and 200 test 28x28 images, gzipped IDX as Fashion-MNIST ships them."""
  directory = tmp_path_factory.mktemp("idx")
  rng = np.random.default_rng(0)
  for split, n in (("train", 512), ("t10k", 200)):
    _write_idx(
      directory / f"{split}-images-idx3-ubyte.gz",
      rng.integers(0, 256, (n, 28, 28)),
      idx.IMAGES_MAGIC,
    )
    _write_idx(
      directory / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n), idx.LABELS_MAGIC
    )
  return directory


def test_peer_reads_and_normalises_as_hybridconv(tiny_idx):
  dataset = idx.load_idx_dataset("fashion_mnist", str(tiny_idx))
  images, labels = peer.load_split(tiny_idx, "train")
  np.testing.assert_array_equal(images, dataset.train_images)
  np.testing.assert_array_equal(labels, dataset.train_labels)
  test_images, _ = peer.load_split(tiny_idx, "test")
  np.testing.assert_array_equal(test_images, dataset.test_images)
  for got, want in zip(
    peer.channel_stats(images, chunk=100), augment.channel_stats(dataset.train_images), strict=True
  ):
    np.testing.assert_allclose(got, want, rtol=1e-6)
  with pytest.raises(ValueError, match="magic"):
    peer.read_idx(tiny_idx / "train-labels-idx1-ubyte.gz", peer.IMAGES_MAGIC)


@pytest.mark.slow
def test_run_jax_times_every_eval_of_the_real_trainer(tiny_idx):
  """train_and_evaluate on 512 images: 4 steps an epoch, evals at steps 2, 4, 6, 8."""
  config = tta.build_config("free", eval_every=0.5, max_epochs=2, data_dir=str(tiny_idx))
  result = tta.run_jax(config, target=0.0)
  evals = result["evals"]
  assert [e["step"] for e in evals] == [2, 4, 6, 8]
  assert [e["epoch"] for e in evals] == [0.5, 1.0, 1.5, 2.0]
  seconds = [e["seconds"] for e in evals]
  assert 0 < seconds[0] < seconds[1] < seconds[2] < seconds[3] <= result["total_seconds"]
  assert (result["step_to_target"], result["seconds_to_target"]) == (2, seconds[0])
  assert result["epochs_to_target"] == 0.5
  assert result["final_accuracy"] == evals[-1]["accuracy"]
  assert result["clock_thread"].startswith("writer-")
  assert not result["stopped_at_target"]
  assert tta.first_crossing(evals, 1.01) is None
  assert math.isfinite(result["total_seconds"])


@pytest.mark.slow
def test_run_jax_stops_at_target_through_preemption(tiny_idx):
  config = tta.build_config("free", eval_every=0.5, max_epochs=2, data_dir=str(tiny_idx))
  result = tta.run_jax(config, target=0.0, stop_at_target=True)
  assert result["stopped_at_target"]
  assert result["step_to_target"] == 2
  assert len(result["evals"]) < 4  # stopped at the step boundary after the signal
