"""TFDS datasets read through random-access data sources, without TensorFlow.

``builder.as_data_source`` reads prepared ArrayRecord files with plain numpy
decoding, so training never imports TensorFlow. Preparing a dataset (download
and conversion) does need TensorFlow; that happens only when ``data.prepare``
is true, and a missing TensorFlow is reported with the install command instead
of a deep ImportError.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from hybridconv.data.dataset import ArrayDataset

PREPARE_EXTRA = "pip install 'hybridconv[tfds-prepare]'"


def tfds_data_dir(data_dir: str = "") -> str:
  """``data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets`` (TFDS's default)."""
  return data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def _builder(name: str, data_dir: str):
  import tensorflow_datasets as tfds  # imported lazily: it is slow and only this path needs it

  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(
      f"data.name {name!r} is not a TFDS dataset; allowed: any name in "
      "tensorflow_datasets.list_builders(), e.g. 'fashion_mnist', 'mnist', 'cifar10', "
      "'cifar100', 'imagenet2012'"
    ) from e


def _download_and_prepare(builder: Any) -> None:
  """Prepares the dataset as ArrayRecord files; needs TensorFlow."""
  try:
    importlib.import_module("tensorflow")
  except ImportError as e:
    raise ImportError(
      f"preparing the TFDS dataset {builder.name!r} needs TensorFlow, which is not installed: "
      f"run `{PREPARE_EXTRA}` (or prepare the dataset elsewhere and copy it to "
      f"{builder.data_dir})"
    ) from e
  builder.download_and_prepare(file_format="array_record")


def open_tfds_builder(name: str, *, data_dir: str = "", prepare: bool = False) -> Any:
  """Returns a prepared TFDS builder, preparing it first if asked to.

  Args:
    name: a TFDS name such as ``'cifar10'`` (``'name/config:version'`` works too).
    data_dir: TFDS data directory; empty means ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
    prepare: when the dataset is not prepared in ``data_dir``, run its
      ``download_and_prepare`` (needs TensorFlow) instead of raising.
  """
  data_dir = tfds_data_dir(data_dir)
  builder = _builder(name, data_dir)
  if not builder.is_prepared():
    if not prepare:
      raise FileNotFoundError(
        f"TFDS dataset {name!r} is not prepared in data dir {data_dir} (looked for "
        f"{builder.data_dir}). Prepare it once with --config.data.prepare=True (needs "
        f"TensorFlow: {PREPARE_EXTRA}), or set --config.data.data_dir / $TFDS_DATA_DIR to a "
        "directory where it is prepared in the array_record format."
      )
    _download_and_prepare(builder)
  return builder


def eval_split_name(builder: Any) -> str:
  """``'test'``, or ``'validation'`` for datasets without a test split (ImageNet)."""
  splits = builder.info.splits
  if "test" not in splits and "validation" in splits:
    return "validation"
  return "test"


def num_classes_of(builder: Any) -> int:
  """Number of classes of the ``'label'`` feature; refuses datasets without image/label."""
  features = builder.info.features
  keys = list(features.keys())
  if "image" not in keys or "label" not in keys:
    raise ValueError(
      f"TFDS dataset {builder.name!r} has features {keys}; an image "
      "classification dataset with 'image' and 'label' features is needed"
    )
  return int(features["label"].num_classes)


def open_tfds_sources(
  name: str, *, data_dir: str = "", prepare: bool = False
) -> tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]], int]:
  """Random-access ``(train, eval, num_classes)`` sources of ``{'image', 'label', ...}`` records."""
  builder = open_tfds_builder(name, data_dir=data_dir, prepare=prepare)
  num_classes = num_classes_of(builder)
  train = builder.as_data_source(split="train")
  evaluation = builder.as_data_source(split=eval_split_name(builder))
  return train, evaluation, num_classes


def has_fixed_image_shape(builder: Any) -> bool:
  """Whether every ``'image'`` has one known shape (MNIST, CIFAR) or sizes vary (ImageNet)."""
  shape = builder.info.features["image"].shape
  return all(d is not None for d in shape)


def open_tfds_streaming_sources(
  name: str, *, data_dir: str = "", prepare: bool = False
) -> tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]], int, bool]:
  """Like :func:`open_tfds_sources`, plus whether the images stay encoded.

  Variable-size images (``imagenet2012``, ``imagenette``) are read as their
  stored JPEG/PNG bytes (``SkipDecoding``): the streaming pipeline's workers
  decode them at the size the crop needs, instead of TFDS decoding every
  pixel in the reading thread.
  """
  import tensorflow_datasets as tfds

  builder = open_tfds_builder(name, data_dir=data_dir, prepare=prepare)
  num_classes = num_classes_of(builder)
  if has_fixed_image_shape(builder):
    decoders = None
  else:
    decoders = {"image": tfds.decode.SkipDecoding()}
  train = builder.as_data_source(split="train", decoders=decoders)
  evaluation = builder.as_data_source(split=eval_split_name(builder), decoders=decoders)
  return train, evaluation, num_classes, decoders is not None


def read_source(source: Sequence[dict[str, Any]], where: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads a whole random-access source into uint8 images ``(N,H,W,C)`` and int32 labels."""
  n = len(source)
  if n == 0:
    raise ValueError(f"{where}: the split is empty")
  first = np.asarray(source[0]["image"])
  if first.ndim == 2:  # tolerate (H, W) grayscale records
    first = first[..., None]
  if first.dtype != np.uint8 or first.ndim != 3:
    raise ValueError(f"{where}: images must be uint8 (H, W, C), got {first.dtype} {first.shape}")
  images = np.empty((n, *first.shape), np.uint8)
  labels = np.empty((n,), np.int32)
  # One record at a time: ``__getitems__`` would batch the reads, but TFDS
  # 4.9.10's ``mock_data`` does not bind ``self`` for it, so tests could not run.
  for key in range(n):
    record = source[key]
    image = np.asarray(record["image"])
    image = image[..., None] if image.ndim == 2 else image
    if image.shape != first.shape:
      raise ValueError(
        f"{where}: record {key} has image shape {image.shape}, record 0 has {first.shape}; "
        "load_dataset needs one shape (use data.pipeline='streaming' for variable sizes)"
      )
    images[key] = image
    labels[key] = record["label"]
  return images, labels


def load_tfds_dataset(name: str, *, data_dir: str = "", prepare: bool = False) -> ArrayDataset:
  """Reads the train and eval splits of a TFDS image dataset fully into memory.

  For datasets that fit in host (and device) memory: MNIST, Fashion-MNIST,
  CIFAR-10/100. The eval split is ``'test'`` (``'validation'`` where there is
  no test split).
  """
  train_source, eval_source, num_classes = open_tfds_sources(
    name, data_dir=data_dir, prepare=prepare
  )
  train_images, train_labels = read_source(train_source, f"{name} train")
  test_images, test_labels = read_source(eval_source, f"{name} eval")
  return ArrayDataset(
    train_images, train_labels, test_images, test_labels, num_classes=num_classes, name=name
  )
