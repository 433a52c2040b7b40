"""Streaming input pipeline: grain over random-access sources, for data too big for devices.

Each JAX process reads its own strided shard (records ``process_index::process_count``,
truncated to equal length so all processes take the same number of steps), shuffles it
with grain's index shuffle (reseeded every epoch), keeps the first
``steps_per_epoch * local_batch`` records of each epoch (the remainder is dropped, as in
:class:`~hybridconv.data.device_pipeline.DevicePipeline`), and reads whole batches on a
thread pool with prefetching. The uint8 local batches become one global array with
``jax.make_array_from_process_local_data`` and are then augmented and normalised by the
same jitted code as the device pipeline (:func:`hybridconv.data.augment.prepare_batch`
with :func:`~hybridconv.data.augment.augment_key`).

The iterator is checkpointable: :meth:`StreamingPipeline.get_state` returns a small dict
of ints (grain's own iterator state plus the step), and :meth:`set_state` resumes with
the identical next batches. Asking for a step other than the next one repositions the
stream, so ``train_batch(step)`` is still a function of ``(seed, step)`` for a fixed
number of processes.

Sources are anything with ``__len__`` and ``__getitem__`` returning ``{'image', 'label'}``
records: TFDS data sources (:func:`hybridconv.data.tfds_source.open_tfds_sources`) or
in-memory arrays (:class:`ArraySource`). Images must all have one shape, unless
``decode`` is given: then records may hold encoded JPEG/PNG bytes or arrays of any
size, and grain's worker processes decode them and crop them to one shape
(:mod:`hybridconv.data.encoded`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import jax
import numpy as np
from absl import flags, logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hybridconv.data import encoded
from hybridconv.data.augment import Augment, augment_key, channel_stats, prepare_batch
from hybridconv.data.device_pipeline import (
  DATA_AXIS,
  Batch,
  check_step,
  data_axis_size,
  put_replicated,
)
from hybridconv.sharding import check_batch_size

Record = dict[str, Any]


class ArraySource:
  """A random-access source over in-memory uint8 images and int labels."""

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    if len(images) != len(labels):
      raise ValueError(f"{len(images)} images but {len(labels)} labels")
    self._images, self._labels = images, labels

  def __len__(self) -> int:
    return len(self._labels)

  def __getitem__(self, index: int) -> Record:
    return {"image": self._images[index], "label": self._labels[index]}


def to_example(record: Record, *, image_shape: tuple[int, ...], num_classes: int) -> Record:
  """Keeps ``image`` (uint8, channel axis added to 2-D images) and ``label`` (int32)."""
  image = np.asarray(record["image"])
  image = image[..., None] if image.ndim == 2 else image
  if image.shape != image_shape or image.dtype != np.uint8:
    raise ValueError(
      f"record image {image.dtype} {image.shape} differs from the first record's "
      f"uint8 {image_shape}; the streaming pipeline needs one image shape"
    )
  label = int(record["label"])
  if not 0 <= label < num_classes:
    raise ValueError(f"record label {label} outside [0, {num_classes})")
  return {"image": image, "label": np.int32(label)}


def sample_stats(source: Sequence[Record], num_examples: int) -> tuple[np.ndarray, np.ndarray]:
  """Channel mean/std from ``num_examples`` evenly strided records (the same on every process)."""
  indices = np.linspace(0, len(source) - 1, min(num_examples, len(source))).round().astype(int)
  images = [np.asarray(source[int(i)]["image"]) for i in np.unique(indices)]
  images = np.stack([im[..., None] if im.ndim == 2 else im for im in images])
  return channel_stats(images)


def _prepare_train(images, labels, mean, std, seed, step, *, augment: Augment):
  images = prepare_batch(images, augment_key(jax.random.key(seed), step), mean, std, augment)
  return {"image": images, "label": labels}


# Cached so that pipelines with the same settings share one compiled program.
@functools.cache
def _jitted_prepare_train(augment: Augment, sharding: NamedSharding):
  return jax.jit(functools.partial(_prepare_train, augment=augment), out_shardings=sharding)


@functools.cache
def _jitted_prepare_eval(sharding: NamedSharding):
  return jax.jit(
    functools.partial(prepare_batch, key=None, config=Augment()), out_shardings=sharding
  )


class StreamingPipeline:
  """Grain-fed batches with per-process shards and a checkpointable iterator.

  Args:
    train_source, eval_source: random-access sources of ``{'image', 'label'}`` records.
    num_classes: number of classes (labels are checked against it).
    global_batch_size, eval_batch_size: batch sizes over all devices; multiples of
      the size of the mesh axis ``'data'``.
    seed: seeds the shuffle and augmentation.
    mesh: a mesh with an axis ``'data'``.
    augment_config: ``data.augment``, an :class:`Augment`, or None.
    num_threads: grain read threads per process (each reads whole batches).
    prefetch_buffer_size: local batches grain reads ahead.
    stats_examples: how many training records estimate the normalisation statistics.
    process_index, process_count: this process's shard; default from JAX.
    decode: for variable-size or encoded images: crop settings and worker count.
      Flips then happen in the workers (``decode.horizontal_flip``), and
      ``augment_config`` may only pad-crop.
  """

  def __init__(
    self,
    train_source: Sequence[Record],
    eval_source: Sequence[Record],
    *,
    num_classes: int,
    global_batch_size: int,
    eval_batch_size: int,
    seed: int,
    mesh: Mesh,
    augment_config=None,
    num_threads: int = 4,
    prefetch_buffer_size: int = 8,
    stats_examples: int = 4096,
    process_index: int | None = None,
    process_count: int | None = None,
    decode: encoded.DecodeConfig | None = None,
  ):
    self.process_index = jax.process_index() if process_index is None else process_index
    self.process_count = jax.process_count() if process_count is None else process_count
    num_shards = data_axis_size(mesh)
    for key, size in (("batch_size", global_batch_size), ("eval_batch_size", eval_batch_size)):
      check_batch_size(key, size, num_shards)  # named by the config's keys
      if size % self.process_count:
        raise ValueError(
          f"config.{key}={size} must be a multiple of the number of processes "
          f"({self.process_count}): each reads an equal share"
        )
    self.local_batch_size = global_batch_size // self.process_count
    self.local_eval_batch_size = eval_batch_size // self.process_count
    self.global_batch_size, self.eval_batch_size = int(global_batch_size), int(eval_batch_size)
    self.shard_size = len(train_source) // self.process_count
    self.steps_per_epoch = self.shard_size // self.local_batch_size
    if self.steps_per_epoch < 1:
      raise ValueError(
        f"global_batch_size={global_batch_size} exceeds the {len(train_source)} training examples"
      )
    self.num_classes = int(num_classes)
    self.augment = Augment.from_config(augment_config)
    self._decode = decode
    if decode is None:
      first = np.asarray(train_source[0]["image"])
      self.image_shape = tuple(first.shape) if first.ndim == 3 else (*first.shape, 1)
      self.mean, self.std = sample_stats(train_source, stats_examples)
    else:
      self.image_shape = (decode.image_size, decode.image_size, 3)
      self.augment = dataclasses.replace(self.augment, horizontal_flip=False)  # flipped in workers
      self._batches = encoded.ImageBatches(
        decode, self.num_classes, seed, self.process_index * self.local_batch_size
      )
      self.mean, self.std = encoded.sample_stats(train_source, stats_examples)
    self.class_names: list[str] | None = None  # index -> name, where the source names classes
    self.skipped_images = 0  # unreadable training images so far (see ``metrics``)
    self.skipped_eval_images = 0  # unreadable images in the last evaluation
    self.num_train_examples, self.num_eval_examples = len(train_source), len(eval_source)
    self._seed = seed
    self._read_options = grain.ReadOptions(
      num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size
    )
    self._example = functools.partial(
      to_example, image_shape=self.image_shape, num_classes=self.num_classes
    )
    self._train_source, self._eval_source = train_source, eval_source
    self._epochs = self._train_epochs()
    self._sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())
    self._stats = tuple(put_replicated(a, replicated) for a in (self.mean, self.std))
    self._train_fn = _jitted_prepare_train(self.augment, self._sharding)
    self._eval_fn = _jitted_prepare_eval(self._sharding)
    self._start_step = 0
    self._next_step = 0
    self._iterator = self.shard_batches(0)

  # -- grain datasets ---------------------------------------------------------

  def _shard(self, source: Sequence[Record], length: int | None) -> grain.MapDataset:
    """This process's strided shard, truncated to ``length`` records when given."""
    shard = grain.MapDataset.source(source)[self.process_index :: self.process_count]
    return shard if length is None else shard[:length]

  def _train_epochs(self) -> grain.MapDataset:
    """Infinite stream of local batches: epoch after epoch of the shuffled, truncated shard.

    Batching happens on the MapDataset, before the thread pool: a read thread
    then produces a whole batch. Grain's per-record prefetch costs about 10x
    more per record than the in-memory reads themselves (measured: 4k vs 35k
    images/s on 2 CPU cores).
    """
    per_epoch = self.steps_per_epoch * self.local_batch_size
    shard = self._shard(self._train_source, self.shard_size)
    epoch = shard.shuffle(seed=self._seed)[:per_epoch]
    if self._decode is not None:
      # Lists of raw records; the map runs in the workers and its index is the step.
      batches = epoch.batch(self.local_batch_size, drop_remainder=True, batch_fn=list)
      return batches.repeat(None).map_with_index(self._batches.train)
    epoch = epoch.map(self._example)
    return epoch.batch(self.local_batch_size, drop_remainder=True).repeat(None)

  def _iterate(self, dataset: grain.MapDataset) -> grain.DatasetIterator:
    """Reads ``dataset`` on threads, and in worker processes when decoding with workers."""
    if self._decode is None or not self._decode.workers:
      return iter(dataset.to_iter_dataset(self._read_options))
    # One thread and one buffered batch per worker: the workers are the
    # parallelism, and an ImageNet batch of 1024 at 224 px is 154 MB.
    in_worker = grain.ReadOptions(num_threads=1, prefetch_buffer_size=1)
    if not flags.FLAGS.is_parsed():
      # grain's mp_prefetch reads its absl flags; under `hybridconv train` they are
      # parsed, in library use (tests, notebooks) their defaults are what we want.
      flags.FLAGS.mark_as_parsed()
    options = grain.MultiprocessingOptions(
      num_workers=self._decode.workers, per_worker_buffer_size=1
    )
    return iter(dataset.to_iter_dataset(in_worker).mp_prefetch(options))

  def shard_batches(self, start_step: int = 0) -> grain.DatasetIterator:
    """A fresh iterator over this process's uint8 batches from ``start_step`` on.

    Each element is ``{'image': uint8 (local_batch, H, W, C), 'label': int32}``;
    the iterator's ``get_state`` / ``set_state`` are grain's.
    """
    return self._iterate(self._epochs[check_step(start_step) :])

  # -- batches ----------------------------------------------------------------

  def _to_global(self, local: dict[str, np.ndarray], batch_size: int) -> dict[str, jax.Array]:
    return {
      name: jax.make_array_from_process_local_data(
        self._sharding, value, (batch_size, *value.shape[1:])
      )
      for name, value in local.items()
    }

  def train_batch(self, step: int) -> Batch:
    """Training batch ``step`` (the next one is cheap; any other repositions the stream)."""
    step = check_step(step)
    if step != self._next_step:
      self._start_step = self._next_step = step
      self._iterator = self.shard_batches(step)
    local = next(self._iterator)
    self._next_step += 1
    skipped = int(local.pop(encoded.SKIPPED_KEY, 0))
    if skipped:
      self.skipped_images += skipped
      logging.warning(
        "step %d: skipped %d unreadable training images (%d so far)",
        step,
        skipped,
        self.skipped_images,
      )
    batch = self._to_global(local, self.global_batch_size)
    return self._train_fn(batch["image"], batch["label"], *self._stats, self._seed, step)

  def eval_batches(self) -> Iterator[Batch]:
    """The eval split in fixed order, sharded by process; ``'mask'`` is False on padding."""
    shard_len = -(-self.num_eval_examples // self.process_count)  # the largest shard
    num_batches = -(-shard_len // self.local_eval_batch_size)
    records = self._shard(self._eval_source, None)
    if self._decode is None:
      records = records.map(self._example).batch(self.local_eval_batch_size)
    else:
      records = records.batch(self.local_eval_batch_size, batch_fn=list).map(self._batches.eval)
    local_batches = self._iterate(records)
    size = self.local_eval_batch_size
    self.skipped_eval_images = 0
    for _ in range(num_batches):
      local = next(local_batches, None)
      count = 0 if local is None else len(local["label"])
      padded = {
        "image": np.zeros((size, *self.image_shape), np.uint8),
        "label": np.zeros((size,), np.int32),
        "mask": np.arange(size) < count,
      }
      if count:
        padded["image"][:count], padded["label"][:count] = local["image"], local["label"]
        if "mask" in local:
          padded["mask"][:count] = local["mask"]
          self.skipped_eval_images += int(local[encoded.SKIPPED_KEY])
      batch = self._to_global(padded, self.eval_batch_size)
      yield {
        "image": self._eval_fn(batch["image"], mean=self._stats[0], std=self._stats[1]),
        "label": batch["label"],
        "mask": batch["mask"],
      }

  def metrics(self) -> dict[str, int]:
    """Data counters for the logs and final metrics (empty unless images are decoded)."""
    if self._decode is None:
      return {}
    return {
      "data/skipped_images": self.skipped_images,
      "data/skipped_eval_images": self.skipped_eval_images,
    }

  # -- checkpointing ----------------------------------------------------------

  def get_state(self) -> dict[str, Any]:
    """Iterator position as a dict of ints (JSON- and orbax-friendly)."""
    return {
      "start_step": self._start_step,
      "next_step": self._next_step,
      "skipped_images": self.skipped_images,
      "iterator": self._iterator.get_state(),
    }

  def set_state(self, state: dict[str, Any]) -> None:
    """Resumes from :meth:`get_state`'s output: the next batches are the same as then."""
    missing = {"start_step", "next_step", "iterator"} - set(state)
    if missing:
      raise ValueError(
        f"streaming pipeline state lacks {sorted(missing)}; got keys {sorted(state)}"
      )
    self._start_step = check_step(state["start_step"])
    self._iterator = self.shard_batches(self._start_step)
    self._iterator.set_state(state["iterator"])
    self._next_step = check_step(state["next_step"])
    self.skipped_images = int(state.get("skipped_images", 0))  # absent in older checkpoints
