"""The in-memory dataset every source produces: uint8 images and int32 labels.

Sources (IDX files, TFDS, procedural gratings) all return an
:class:`ArrayDataset`, so the device-resident pipeline and the tests need to
know only one container. Validation happens here, once, so that a malformed
source fails when it is loaded rather than deep inside a jitted step.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
  """A labelled image classification dataset held as host numpy arrays.

  Attributes:
    train_images: uint8 ``(N, H, W, C)``.
    train_labels: int32 ``(N,)`` in ``[0, num_classes)``.
    test_images: uint8 ``(M, H, W, C)`` with the training ``(H, W, C)``.
    test_labels: int32 ``(M,)`` in ``[0, num_classes)``.
    num_classes: number of classes.
    name: a short name for logs and reports, e.g. ``'fashion_mnist'``.
  """

  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  name: str

  def __post_init__(self):
    if int(self.num_classes) != self.num_classes or self.num_classes < 1:
      raise ValueError(f"{self.name}: num_classes must be a positive int, got {self.num_classes!r}")
    for split in ("train", "test"):
      images = getattr(self, f"{split}_images")
      labels = getattr(self, f"{split}_labels")
      check_split(self.name, split, images, labels, self.num_classes)
    if self.train_images.shape[1:] != self.test_images.shape[1:]:
      raise ValueError(
        f"{self.name}: train images have shape {self.train_images.shape[1:]} per example but "
        f"test images {self.test_images.shape[1:]}; they must agree"
      )

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """``(H, W, C)`` of one image."""
    return tuple(self.train_images.shape[1:])


def check_split(
  name: str, split: str, images: np.ndarray, labels: np.ndarray, num_classes: int
) -> None:
  """Refuses arrays of the wrong dtype or rank, count mismatches and out-of-range labels."""
  where = f"{name} {split}"
  if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(
      f"{where}: images must be a uint8 numpy array of shape (N, H, W, C), got "
      f"{type(images).__name__} {getattr(images, 'dtype', '?')} {getattr(images, 'shape', '?')}"
    )
  if not isinstance(labels, np.ndarray) or labels.dtype != np.int32 or labels.ndim != 1:
    raise ValueError(
      f"{where}: labels must be an int32 numpy array of shape (N,), got "
      f"{type(labels).__name__} {getattr(labels, 'dtype', '?')} {getattr(labels, 'shape', '?')}"
    )
  if len(images) != len(labels):
    raise ValueError(f"{where}: {len(images)} images but {len(labels)} labels; counts must match")
  if len(images) == 0:
    raise ValueError(f"{where}: the split is empty")
  low, high = int(labels.min()), int(labels.max())
  if low < 0 or high >= num_classes:
    raise ValueError(
      f"{where}: labels must lie in [0, {num_classes}), found values from {low} to {high}"
    )
