"""Entry points that read the ``data`` config: which source, which pipeline.

Config keys read here (declared in ``configs/default.py``):
``data.source``, ``data.name``, ``data.data_dir``, ``data.pipeline``,
``data.prepare``, ``data.train_size``, ``data.subset_seed``,
``data.augment.{crop_padding, horizontal_flip}``, for variable-size images
(``imagefolder``, TFDS ImageNet) ``data.decode.*`` and, for
gratings, ``data.gratings.{num_train, num_test, image_size, task,
num_classes, noise, envelope_sigma, seed}``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
from jax.sharding import Mesh

from hybridconv.data import idx, imagefolder, subset
from hybridconv.data.dataset import ArrayDataset
from hybridconv.data.device_pipeline import DevicePipeline
from hybridconv.data.encoded import DecodeConfig
from hybridconv.data.gratings import load_gratings_dataset
from hybridconv.data.idx import load_idx_dataset
from hybridconv.data.tfds_source import load_tfds_dataset, open_tfds_streaming_sources

SOURCES = ("idx", "tfds", "gratings", "imagefolder")
PIPELINES = ("device", "streaming")


class Pipeline(Protocol):
  """What the train loop needs of a data pipeline: a DevicePipeline or a StreamingPipeline.

  Attributes:
    steps_per_epoch: training batches per epoch.
    num_classes: labels are in ``[0, num_classes)``.
    image_shape: ``(H, W, C)`` of one image.
  """

  steps_per_epoch: int
  num_classes: int
  image_shape: tuple[int, ...]

  def train_batch(self, step: int) -> dict[str, Any]:
    """Training batch ``step`` (0-based), sharded over the mesh."""

  def eval_batches(self) -> Iterator[dict[str, Any]]:
    """The test split in fixed order, with a ``'mask'`` of real examples (a pipeline with a
    validation hold-out also takes ``split='validation'``)."""

  def get_state(self) -> Any:
    """What a checkpoint saves to resume the batch stream exactly (None: nothing)."""

  def set_state(self, state: Any) -> None:
    """Resumes from :meth:`get_state`'s output."""


def _check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
  if value not in allowed:
    raise ValueError(f"{key} must be one of {allowed}, got {value!r}")


def check_config(data_config: Any) -> None:
  """Refuses an unknown ``data.source`` or ``data.pipeline``, or a bad validation hold-out,
  before anything loads."""
  _check_choice("data.pipeline", data_config.pipeline, PIPELINES)
  _check_choice("data.source", data_config.source, SOURCES)
  size, seed = data_config.validation_size, data_config.validation_seed
  if isinstance(size, bool) or not isinstance(size, int) or size < 0:
    raise ValueError(f"data.validation_size={size!r} must be an int >= 0 (0 = no hold-out)")
  if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
    raise ValueError(f"data.validation_seed={seed!r} must be an int >= 0")
  if size and data_config.pipeline != "device":
    raise ValueError(
      f"data.validation_size={size} needs data.pipeline='device' (the streaming pipeline "
      f"evaluates the test split only), got data.pipeline={data_config.pipeline!r}"
    )


def known_input_shape(data_config: Any) -> tuple[tuple[int, int, int], int] | None:
  """``(image_shape, num_classes)`` when the config alone fixes them, else None.

  IDX datasets have one format; gratings take both from the config. Other
  sources (TFDS, image folders) need the data itself. ``data_config`` is the
  ``data`` section, as a ConfigDict or a saved config's dict.
  """
  if data_config.get("source") == "idx" and data_config.get("name") in idx.NUM_CLASSES:
    return idx.IMAGE_SHAPE, idx.NUM_CLASSES[data_config["name"]]
  if data_config.get("source") == "gratings":
    gratings = data_config.get("gratings") or {}
    size = int(gratings.get("image_size", 0))
    return ((size, size, 1), int(gratings.get("num_classes", 0))) if size else None
  return None


def load_dataset(data_config: Any) -> ArrayDataset:
  """Reads the configured dataset fully into host memory.

  Args:
    data_config: the ``data`` section of an experiment config.

  Returns:
    uint8 images and int32 labels for train and test.
  """
  source = data_config.source
  _check_choice("data.source", source, SOURCES)
  if source == "imagefolder":
    raise ValueError(
      "data.source='imagefolder' needs data.pipeline='streaming' (its images "
      "differ in size and are decoded while streaming), got data.pipeline="
      f"{data_config.pipeline!r}"
    )
  if source == "idx":
    return load_idx_dataset(data_config.name, data_config.data_dir)
  if source == "tfds":
    return load_tfds_dataset(
      data_config.name, data_dir=data_config.data_dir, prepare=data_config.prepare
    )
  g = data_config.gratings
  return load_gratings_dataset(
    num_train=g.num_train,
    num_test=g.num_test,
    image_size=g.image_size,
    task=g.task,
    num_classes=g.num_classes,
    noise=g.noise,
    envelope_sigma=g.envelope_sigma,
    seed=g.seed,
  )


def build_pipeline(
  data_config: Any, *, global_batch_size: int, eval_batch_size: int, seed: int, mesh: Mesh
) -> Pipeline:
  """The pipeline named by ``data.pipeline`` over the configured source.

  ``'device'`` loads the dataset into memory and onto the devices. ``'streaming'``
  reads TFDS sources lazily through grain; for the in-memory sources (``idx``,
  ``gratings``) it streams from host arrays, which is mainly useful to compare
  the two pipelines on the same data.
  """
  _check_choice("data.pipeline", data_config.pipeline, PIPELINES)
  _check_choice("data.source", data_config.source, SOURCES)
  common = dict(
    global_batch_size=global_batch_size,
    eval_batch_size=eval_batch_size,
    seed=seed,
    mesh=mesh,
    augment_config=data_config.augment,
  )
  subset_seed = seed if data_config.subset_seed < 0 else data_config.subset_seed
  choose = functools.partial(
    _train_subset,
    data_config.train_size,
    subset_seed=subset_seed,
    global_batch_size=global_batch_size,
  )
  if data_config.pipeline == "device":
    dataset = load_dataset(data_config)
    dataset, validation, held_out = _hold_out_validation(dataset, data_config)
    indices, record = choose(dataset.train_labels, dataset.num_classes)
    if indices is not None:
      dataset = dataclasses.replace(
        dataset,
        train_images=dataset.train_images[indices],
        train_labels=dataset.train_labels[indices],
      )
    if held_out is not None:
      record = {**record, **held_out}
    pipeline = DevicePipeline(dataset, validation=validation, **common)
    pipeline.train_subset = record
    return pipeline
  # grain (and orbax through it) is imported only by streaming runs: a device-pipeline
  # run, every point of a small study, skips its half-second import.
  from hybridconv.data.streaming import ArraySource, StreamingPipeline  # noqa: PLC0415

  class_names = None
  decode = None
  labels = None
  if data_config.source == "imagefolder":
    decode = _decode_config(data_config)  # checked before the folder scan
    train, evaluation, class_names = imagefolder.open_imagefolder(data_config.data_dir)
    num_classes = len(class_names)
  elif data_config.source == "tfds":
    train, evaluation, num_classes, encoded = open_tfds_streaming_sources(
      data_config.name, data_dir=data_config.data_dir, prepare=data_config.prepare
    )
    decode = _decode_config(data_config) if encoded else None
  else:
    dataset = load_dataset(data_config)
    train = ArraySource(dataset.train_images, dataset.train_labels)
    evaluation = ArraySource(dataset.test_images, dataset.test_labels)
    num_classes, labels = dataset.num_classes, dataset.train_labels
  if data_config.train_size:
    labels = subset.labels_of(train) if labels is None else labels
    indices, record = choose(labels, num_classes)
    train = subset.SubsetSource(train, indices, labels)
  else:
    record = {"train_size": 0, "split_size": len(train), "num_examples": len(train)}
  pipeline = StreamingPipeline(train, evaluation, num_classes=num_classes, decode=decode, **common)
  pipeline.class_names = class_names
  pipeline.train_subset = record
  return pipeline


def _hold_out_validation(dataset: ArrayDataset, data_config: Any):
  """``(dataset without the hold-out, (images, labels) or None, record entries or None)``."""
  size = data_config.validation_size
  if not size:
    return dataset, None, None
  validation, remaining = subset.hold_out(
    dataset.train_labels,
    num_classes=dataset.num_classes,
    size=size,
    seed=data_config.validation_seed,
  )
  images, labels = dataset.train_images, dataset.train_labels
  rest = dataclasses.replace(
    dataset, train_images=images[remaining], train_labels=labels[remaining]
  )
  record = {
    "validation_size": int(size),
    "validation_seed": int(data_config.validation_seed),
    "validation_sha256": subset.indices_sha256(validation),
  }
  return rest, (images[validation], labels[validation]), record


def _decode_config(data_config: Any) -> DecodeConfig:
  return DecodeConfig.from_config(
    data_config.decode, data_config.augment.horizontal_flip, os.cpu_count() or 1
  )


def _train_subset(
  train_size: int, labels: np.ndarray, num_classes: int, *, subset_seed: int, global_batch_size: int
) -> tuple[np.ndarray | None, dict[str, Any]]:
  """``(indices or None for all, record for train_subset.json)`` of the training split."""
  subset.check_train_size(
    train_size, split_size=len(labels), num_classes=num_classes, global_batch_size=global_batch_size
  )
  indices = None
  if train_size:
    indices = subset.balanced_indices(
      labels, num_classes=num_classes, size=train_size, seed=subset_seed
    )
  return indices, subset.subset_record(
    indices, labels, num_classes=num_classes, train_size=train_size, subset_seed=subset_seed
  )
