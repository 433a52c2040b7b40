"""Batches of variable-size (encoded) images: decoded and cropped in grain's workers.

The streaming pipeline groups raw records (``{'image': bytes or array, 'label'}``)
into lists, one per local batch, and maps :meth:`ImageBatches.train` over them
with the batch's step; grain runs that map in its worker processes, so the
main process only receives fixed-shape uint8 batches. Normalisation stays in
jit, as for every other source.

An image that cannot be decoded is skipped, never a crash mid-epoch: in a
training batch its slot takes the next readable image of the same batch
(with that image's label and the slot's own crop), in an eval batch its mask
is False. Each batch reports how many it skipped under ``'skipped'``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from hybridconv.data import crops, decode
from hybridconv.data.augment import channel_stats

SKIPPED_KEY = "skipped"


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
  """How encoded images become model inputs (``data.decode``).

  Attributes:
    image_size: side of the square crops (train and eval).
    eval_resize: eval resizes the shorter side to this, then centre-crops.
    crop_scale: random-resized crop area range, as fractions of the image.
    crop_ratio: random-resized crop aspect-ratio range (width / height).
    horizontal_flip: random left-right flips of training crops.
    workers: grain worker processes that decode (0 = threads of this process).
  """

  image_size: int = 224
  eval_resize: int = 256
  crop_scale: tuple[float, float] = (0.08, 1.0)
  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
  horizontal_flip: bool = True
  workers: int = 0

  def __post_init__(self):
    for key in ("image_size", "eval_resize", "workers"):
      value = getattr(self, key)
      if isinstance(value, bool) or int(value) != value or value < (0 if key == "workers" else 1):
        allowed = "an int >= 0 (-1 = one per core but one)" if key == "workers" else "an int >= 1"
        raise ValueError(f"data.decode.{key} must be {allowed}, got {value!r}")
    if self.eval_resize < self.image_size:
      raise ValueError(
        f"data.decode.eval_resize={self.eval_resize} must be >= "
        f"data.decode.image_size={self.image_size} (it is resized, then cropped)"
      )
    for key, low, high in (("crop_scale", 0.0, 1.0), ("crop_ratio", 0.0, float("inf"))):
      pair = tuple(getattr(self, key))
      if len(pair) != 2 or not low < pair[0] <= pair[1] <= high:
        raise ValueError(
          f"data.decode.{key} must be (low, high) with {low} < low <= high <= {high}, got {pair!r}"
        )

  @classmethod
  def from_config(cls, config: Any, horizontal_flip: bool, cpu_count: int) -> DecodeConfig:
    """From ``data.decode``; ``workers=-1`` becomes ``cpu_count - 1`` (at least 1)."""
    workers = config.workers
    if workers == -1:
      workers = max(cpu_count - 1, 1)
    return cls(
      image_size=config.image_size,
      eval_resize=config.eval_resize,
      crop_scale=tuple(config.crop_scale),
      crop_ratio=tuple(config.crop_ratio),
      horizontal_flip=bool(horizontal_flip),
      workers=workers,
    )


def _record_name(record: dict[str, Any], position: int) -> str:
  name = record.get("file_name", None)
  if isinstance(name, bytes):
    name = name.decode(errors="replace")
  return str(name) if name is not None else f"record at batch position {position}"


@dataclasses.dataclass(frozen=True)
class ImageBatches:
  """Picklable batch transforms for grain's workers.

  Attributes:
    config: the crop settings.
    num_classes: labels are checked against it.
    seed: seeds the crops (with the step and the image's index).
    index_offset: this process's first index within a global batch, so that
      processes never share crop randomness.
  """

  config: DecodeConfig
  num_classes: int
  seed: int
  index_offset: int = 0

  def _label(self, record: dict[str, Any]) -> np.int32:
    label = int(record["label"])
    if not 0 <= label < self.num_classes:
      raise ValueError(f"record label {label} outside [0, {self.num_classes})")
    return np.int32(label)

  def train(self, step: int, records: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Random-resized crops of one local batch; a function of ``(seed, step, index)``."""
    c = self.config
    size = len(records)
    images = np.zeros((size, c.image_size, c.image_size, 3), np.uint8)
    labels = np.zeros((size,), np.int32)
    bad = []
    for i, record in enumerate(records):
      rng = crops.crop_rng(self.seed, step, self.index_offset + i)
      try:
        images[i] = crops.train_crop(
          record["image"],
          rng,
          size=c.image_size,
          scale=c.crop_scale,
          ratio=c.crop_ratio,
          flip=c.horizontal_flip,
        )
      except decode.DecodeError as e:
        logging.warning("skipping unreadable image (%s): %s", _record_name(record, i), e)
        bad.append(i)
        continue
      labels[i] = self._label(record)
    if len(bad) == size:
      raise decode.DecodeError(
        f"every image of the {size}-image batch at step {step} is unreadable; check the data"
      )
    unreadable = set(bad)
    good = [i for i in range(size) if i not in unreadable]
    for i in bad:  # the next readable image of the batch, cyclically
      j = next((g for g in good if g > i), good[0])
      images[i], labels[i] = images[j], labels[j]
    return {"image": images, "label": labels, SKIPPED_KEY: np.int32(len(bad))}

  def eval(self, records: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Centre crops of one local eval batch; ``'mask'`` is False where decoding failed."""
    c = self.config
    size = len(records)
    images = np.zeros((size, c.image_size, c.image_size, 3), np.uint8)
    labels = np.zeros((size,), np.int32)
    mask = np.ones((size,), bool)
    for i, record in enumerate(records):
      try:
        images[i] = crops.eval_crop(record["image"], size=c.image_size, resize=c.eval_resize)
      except decode.DecodeError as e:
        logging.warning("skipping unreadable eval image (%s): %s", _record_name(record, i), e)
        mask[i] = False
        continue
      labels[i] = self._label(record)
    return {
      "image": images,
      "label": labels,
      "mask": mask,
      SKIPPED_KEY: np.int32(size - int(mask.sum())),
    }


def sample_stats(
  source: Sequence[dict[str, Any]], num_examples: int, size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
  """Channel mean/std from evenly strided records, centre-cropped small (cheap to decode).

  Per-channel statistics hardly depend on the resolution, and a small crop
  lets JPEGs decode at 1/8 scale. Unreadable records are left out.
  """
  indices = np.unique(
    np.linspace(0, len(source) - 1, min(num_examples, len(source))).round().astype(int)
  )
  images = []
  for i in indices:
    try:
      images.append(crops.eval_crop(source[int(i)]["image"], size=size, resize=size))
    except decode.DecodeError:
      continue
  if not images:
    raise ValueError(f"none of the {len(indices)} sampled training images could be decoded")
  return channel_stats(np.stack(images))
