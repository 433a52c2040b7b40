"""Streaming pipeline: exact resumption from iterator state, shards, epochs, eval padding."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from hybridconv.data import ArrayDataset, ArraySource, Augment, DevicePipeline, StreamingPipeline

REPO = pathlib.Path(__file__).resolve().parents[1]


def _mesh():
  return Mesh(np.array(jax.devices()[:1]), ("data",))


def _sources(num_train=30, num_test=7):
  """Image i is filled with i + 1 and labelled i."""

  def images(n):
    return np.broadcast_to(
      np.arange(1, n + 1, dtype=np.uint8)[:, None, None, None], (n, 4, 4, 1)
    ).copy()

  return (
    ArraySource(images(num_train), np.arange(num_train)),
    ArraySource(images(num_test), np.arange(num_test)),
  )


def _pipeline(batch=4, eval_batch=3, augment=None, seed=0, **kwargs):
  train, evaluation = kwargs.pop("sources", None) or _sources()
  return StreamingPipeline(
    train,
    evaluation,
    num_classes=kwargs.pop("num_classes", 30),
    global_batch_size=batch,
    eval_batch_size=eval_batch,
    seed=seed,
    mesh=_mesh(),
    augment_config=augment,
    num_threads=2,
    **kwargs,
  )


def _labels(batch):
  return np.asarray(batch["label"])


def test_restored_state_continues_with_identical_batches():
  pipeline = _pipeline(augment=Augment(1, True))
  for step in range(5):
    pipeline.train_batch(step)
  state = pipeline.get_state()
  assert state["next_step"] == 5
  expected = [pipeline.train_batch(step) for step in range(5, 17)]  # spans two epoch ends
  fresh = _pipeline(augment=Augment(1, True))
  fresh.set_state(state)
  for step, want in zip(range(5, 17), expected, strict=True):
    got = fresh.train_batch(step)
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["label"], want["label"])


def test_asking_for_any_step_repositions_the_stream():
  sequential = _pipeline()
  batches = [_labels(sequential.train_batch(step)) for step in range(12)]
  jumping = _pipeline()
  np.testing.assert_array_equal(_labels(jumping.train_batch(9)), batches[9])
  np.testing.assert_array_equal(_labels(jumping.train_batch(10)), batches[10])
  np.testing.assert_array_equal(_labels(jumping.train_batch(2)), batches[2])
  assert jumping.get_state()["start_step"] == 2


def test_epochs_cover_the_shard_without_repeats_and_reshuffle():
  pipeline = _pipeline(batch=4)
  assert pipeline.steps_per_epoch == 7  # 30 // 4
  epochs = [
    np.concatenate([_labels(pipeline.train_batch(e * 7 + s)) for s in range(7)]) for e in range(2)
  ]
  for labels in epochs:
    assert len(np.unique(labels)) == 28
  assert not np.array_equal(epochs[0], epochs[1])


def test_process_shards_are_disjoint_and_equal_length():
  shards = []
  for index in range(2):
    pipeline = _pipeline(batch=4, eval_batch=4, process_index=index, process_count=2)
    assert pipeline.local_batch_size == 2 and pipeline.steps_per_epoch == 7  # 15 // 2
    batches = pipeline.shard_batches(0)
    shards.append(np.concatenate([next(batches)["label"] for _ in range(7)]))
  assert all(len(np.unique(s)) == 14 for s in shards)
  assert not set(shards[0]) & set(shards[1])
  assert set(shards[0]) <= set(range(0, 30, 2)) and set(shards[1]) <= set(range(1, 30, 2))


def test_augmentation_matches_the_device_pipeline():
  # Identical images, so only the augmentation randomness can differ.
  train = np.zeros((24, 6, 6, 1), np.uint8)
  train[:, 1:5, 2] = 255
  labels = np.zeros(24, np.int32)
  dataset = ArrayDataset(train, labels, train[:4], labels[:4], num_classes=1, name="bar")
  augment = Augment(crop_padding=2, horizontal_flip=True)
  device = DevicePipeline(
    dataset, global_batch_size=8, eval_batch_size=4, seed=7, mesh=_mesh(), augment_config=augment
  )
  streaming = _pipeline(
    batch=8,
    eval_batch=4,
    augment=augment,
    seed=7,
    num_classes=1,
    sources=(ArraySource(train, labels), ArraySource(train[:4], labels[:4])),
  )
  for step in (0, 1, 4):
    np.testing.assert_allclose(
      streaming.train_batch(step)["image"], device.train_batch(step)["image"], rtol=1e-6
    )
  assert not np.allclose(device.train_batch(0)["image"], device.train_batch(1)["image"])


def test_eval_batches_fixed_order_with_mask():
  pipeline = _pipeline(eval_batch=3)
  batches = list(pipeline.eval_batches())
  mask = np.concatenate([np.asarray(b["mask"]) for b in batches])
  labels = np.concatenate([_labels(b) for b in batches])
  np.testing.assert_array_equal(mask, np.arange(9) < 7)
  np.testing.assert_array_equal(labels[:7], np.arange(7))
  pixels = np.concatenate([np.asarray(b["image"]) for b in batches])
  pixels = np.round((pixels * pipeline.std + pipeline.mean) * 255)
  np.testing.assert_array_equal(pixels[:7, 0, 0, 0], np.arange(1, 8))


def test_refusals():
  with pytest.raises(
    ValueError, match=r"config.batch_size=6 must be a multiple of the number of processes \(4\)"
  ):
    _pipeline(batch=6, process_index=0, process_count=4)
  with pytest.raises(ValueError, match="global_batch_size=31 exceeds the 30 training examples"):
    _pipeline(batch=31)
  with pytest.raises(ValueError, match=r"state lacks \['iterator', 'start_step'\]"):
    _pipeline().set_state({"next_step": 3})
  bad_labels = ArraySource(np.zeros((8, 2, 2, 1), np.uint8), np.full(8, 5))
  pipeline = _pipeline(sources=(bad_labels, bad_labels), num_classes=5)
  with pytest.raises(ValueError, match=r"label 5 outside \[0, 5\)"):
    pipeline.train_batch(0)


_TWO_PROCESS_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    import numpy as np
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh
    from hybridconv.data import (ArrayDataset, ArraySource, Augment, DevicePipeline,
                                 StreamingPipeline)

    n = 30
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 4, 4, 1))
    images = images.copy()
    labels = np.arange(n, dtype=np.int32)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    kw = dict(global_batch_size=8, eval_batch_size=4, seed=5, mesh=mesh,
              augment_config=Augment(1, True))
    device = DevicePipeline(ArrayDataset(images, labels, images[:6], labels[:6], n, "idx"), **kw)
    streaming = StreamingPipeline(ArraySource(images, labels), ArraySource(images[:6], labels[:6]),
                                  num_classes=n, num_threads=1, **kw)
    gather = lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)).tolist()
    out = {"device": [gather(device.train_batch(s)["label"]) for s in (0, 4)],
           "streaming": [gather(streaming.train_batch(s)["label"]) for s in (0, 1)],
           "eval_mask": [gather(b["mask"]) for b in streaming.eval_batches()],
           "eval_label": [gather(b["label"]) for b in streaming.eval_batches()]}
    print("RESULT" + json.dumps(out))
""")


@pytest.mark.slow
def test_two_processes_shard_the_stream_and_agree_on_device_batches():
  # Two JAX processes on CPU (2 fake devices each) talking through gloo.
  with socket.socket() as s:
    s.bind(("localhost", 0))
    address = f"localhost:{s.getsockname()[1]}"
  env = dict(
    os.environ,
    JAX_NUM_CPU_DEVICES="2",
    JAX_PLATFORMS="cpu",
    PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
  )
  procs = [
    subprocess.Popen(
      [sys.executable, "-c", _TWO_PROCESS_SCRIPT, address, str(i)],
      env=env,
      cwd=REPO,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  outputs = [p.communicate(timeout=300) for p in procs]
  for proc, (out, err) in zip(procs, outputs, strict=True):
    assert proc.returncode == 0 and "RESULT" in out, err[-4000:]
  results = [json.loads(out.split("RESULT")[1]) for out, _ in outputs]
  assert results[0] == results[1]  # every process sees the same global batches
  result = results[0]

  # Device pipeline: the same global batches as a single process computes.
  n = 30
  images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 4, 4, 1)).copy()
  labels = np.arange(n, dtype=np.int32)
  kw = dict(
    global_batch_size=8, eval_batch_size=4, seed=5, mesh=_mesh(), augment_config=Augment(1, True)
  )
  single = DevicePipeline(ArrayDataset(images, labels, images[:6], labels[:6], n, "idx"), **kw)
  assert result["device"] == [np.asarray(single.train_batch(s)["label"]).tolist() for s in (0, 4)]

  # Streaming: process i's half of each global batch comes from its own shard i::2.
  for step, batch in enumerate(result["streaming"]):
    for index in range(2):
      local = StreamingPipeline(
        ArraySource(images, labels),
        ArraySource(images[:6], labels[:6]),
        num_classes=n,
        num_threads=1,
        process_index=index,
        process_count=2,
        **kw,
      )
      want = [next(local.shard_batches(step))["label"].tolist()]
      assert batch[4 * index : 4 * index + 4] == want[0]
      assert all(label % 2 == index for label in want[0])
  # Eval: 3 examples per process (0, 2, 4 and 1, 3, 5), local batches of 2, padded.
  assert result["eval_mask"] == [[True, True, True, True], [True, False, True, False]]
  assert [
    x
    for b, m in zip(result["eval_label"], result["eval_mask"], strict=True)
    for x, keep in zip(b, m, strict=True)
    if keep
  ] == [0, 2, 1, 3, 4, 5]
