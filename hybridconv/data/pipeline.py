"""Entry points that read the ``data`` config: which source, which pipeline.

Config keys read here (declared in ``configs/default.py``):
``data.source``, ``data.name``, ``data.data_dir``, ``data.pipeline``,
``data.prepare``, ``data.augment.{crop_padding, horizontal_flip}`` and, for
gratings, ``data.gratings.{num_train, num_test, image_size, task,
num_classes, noise, envelope_sigma, seed}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from jax.sharding import Mesh

from hybridconv.data.dataset import ArrayDataset
from hybridconv.data.device_pipeline import DevicePipeline
from hybridconv.data.gratings import load_gratings_dataset
from hybridconv.data.idx import load_idx_dataset
from hybridconv.data.streaming import ArraySource, StreamingPipeline
from hybridconv.data.tfds_source import load_tfds_dataset, open_tfds_sources

SOURCES = ("idx", "tfds", "gratings")
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
    """The eval split in fixed order, with a ``'mask'`` of real examples."""

  def get_state(self) -> Any:
    """What a checkpoint saves to resume the batch stream exactly (None: nothing)."""

  def set_state(self, state: Any) -> None:
    """Resumes from :meth:`get_state`'s output."""


def _check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
  if value not in allowed:
    raise ValueError(f"{key} must be one of {allowed}, got {value!r}")


def check_config(data_config: Any) -> None:
  """Refuses an unknown ``data.source`` or ``data.pipeline`` before anything loads."""
  _check_choice("data.pipeline", data_config.pipeline, PIPELINES)
  _check_choice("data.source", data_config.source, SOURCES)


def load_dataset(data_config: Any) -> ArrayDataset:
  """Reads the configured dataset fully into host memory.

  Args:
    data_config: the ``data`` section of an experiment config.

  Returns:
    uint8 images and int32 labels for train and test.
  """
  source = data_config.source
  _check_choice("data.source", source, SOURCES)
  if source == "idx":
    return load_idx_dataset(data_config.name, data_config.data_dir)
  if source == "tfds":
    return load_tfds_dataset(data_config.name, data_dir=data_config.data_dir,
                             prepare=data_config.prepare)
  g = data_config.gratings
  return load_gratings_dataset(
      num_train=g.num_train, num_test=g.num_test, image_size=g.image_size, task=g.task,
      num_classes=g.num_classes, noise=g.noise, envelope_sigma=g.envelope_sigma, seed=g.seed)


def build_pipeline(data_config: Any, *, global_batch_size: int, eval_batch_size: int,
                   seed: int, mesh: Mesh) -> Pipeline:
  """The pipeline named by ``data.pipeline`` over the configured source.

  ``'device'`` loads the dataset into memory and onto the devices. ``'streaming'``
  reads TFDS sources lazily through grain; for the in-memory sources (``idx``,
  ``gratings``) it streams from host arrays, which is mainly useful to compare
  the two pipelines on the same data.
  """
  _check_choice("data.pipeline", data_config.pipeline, PIPELINES)
  _check_choice("data.source", data_config.source, SOURCES)
  common = dict(global_batch_size=global_batch_size, eval_batch_size=eval_batch_size, seed=seed,
                mesh=mesh, augment_config=data_config.augment)
  if data_config.pipeline == "device":
    return DevicePipeline(load_dataset(data_config), **common)
  if data_config.source == "tfds":
    train, evaluation, num_classes = open_tfds_sources(
        data_config.name, data_dir=data_config.data_dir, prepare=data_config.prepare)
  else:
    dataset = load_dataset(data_config)
    train = ArraySource(dataset.train_images, dataset.train_labels)
    evaluation = ArraySource(dataset.test_images, dataset.test_labels)
    num_classes = dataset.num_classes
  return StreamingPipeline(train, evaluation, num_classes=num_classes, **common)
