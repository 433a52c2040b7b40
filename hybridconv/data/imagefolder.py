"""Image-folder source: ``<root>/{train,val}/<class>/<image>.{jpg,jpeg,png}``.

The layout of torchvision's ``ImageFolder`` and of the Imagenette download:
one subfolder per class, class indices are the sorted folder names of
``train/``. Records hold the encoded bytes (read on access, in grain's
workers) so decoding and cropping happen in parallel, not at start.

Everything that can be checked without decoding is checked at start, with one
line naming the path: a missing root or split, a split with no class folders,
a class folder with no images, a ``val/`` class that ``train/`` lacks. Corrupt
files are found while decoding and skipped (see :mod:`hybridconv.data.encoded`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from hybridconv.run_layout import CLASSES_FILE

SPLITS = ("train", "val")
EXTENSIONS = (".jpg", ".jpeg", ".png")


class ImageFolderSource:
  """Random access to one split's ``{'image': bytes, 'label': int, 'file_name': str}`` records.

  Args:
    paths: image files, in a fixed order.
    labels: class index of each file.
  """

  def __init__(self, paths: list[str], labels: list[int]):
    self._paths, self._labels = list(paths), list(labels)

  def __len__(self) -> int:
    return len(self._paths)

  @property
  def labels(self) -> np.ndarray:
    """Every file's class index, without reading a file (a training subset needs them)."""
    return np.asarray(self._labels, np.int64)

  def __getitem__(self, index: int) -> dict[str, Any]:
    path = self._paths[index]
    with open(path, "rb") as f:
      data = f.read()
    return {"image": data, "label": self._labels[index], "file_name": path}


def _class_folders(split_dir: str) -> list[str]:
  with os.scandir(split_dir) as entries:
    return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _images(class_dir: str) -> list[str]:
  with os.scandir(class_dir) as entries:
    return sorted(e.path for e in entries if e.is_file() and e.name.lower().endswith(EXTENSIONS))


def _scan(split_dir: str, classes: list[str]) -> tuple[list[str], list[int]]:
  paths, labels = [], []
  for label, name in enumerate(classes):
    class_dir = os.path.join(split_dir, name)
    if not os.path.isdir(class_dir):
      continue  # a val/ without some train/ classes is fine
    files = _images(class_dir)
    if not files:
      raise ValueError(
        f"data.data_dir: class folder {class_dir} holds no images; allowed: "
        f"files ending in {', '.join(EXTENSIONS)} (any case)"
      )
    paths += files
    labels += [label] * len(files)
  return paths, labels


def open_imagefolder(root: str) -> tuple[ImageFolderSource, ImageFolderSource, list[str]]:
  """``(train, val, class_names)`` for the folder ``root``.

  Raises:
    ValueError: a missing or empty root or split, an empty class folder, or a
      ``val/`` class not in ``train/`` -- one line naming the path.
  """
  if not root:
    raise ValueError(
      "data.data_dir is empty; data.source='imagefolder' needs a directory "
      "with train/ and val/ subfolders of class folders"
    )
  if not os.path.isdir(root):
    raise ValueError(
      f"data.data_dir={root!r} is not a directory; allowed: a directory with "
      "train/ and val/ subfolders of class folders"
    )
  for split in SPLITS:
    if not os.path.isdir(os.path.join(root, split)):
      raise ValueError(
        f"data.data_dir={root!r} has no {split}/ folder; allowed: a directory "
        f"with {' and '.join(s + '/' for s in SPLITS)} subfolders of class folders"
      )
  classes = _class_folders(os.path.join(root, "train"))
  if not classes:
    raise ValueError(
      f"data.data_dir: {os.path.join(root, 'train')} has no class folders; "
      "allowed: one subfolder of images per class"
    )
  val_dir = os.path.join(root, "val")
  extra = sorted(set(_class_folders(val_dir)) - set(classes))
  if extra:
    raise ValueError(
      f"data.data_dir: {val_dir} has class folders {extra} that train/ lacks; "
      "allowed: the train/ classes"
    )
  train = ImageFolderSource(*_scan(os.path.join(root, "train"), classes))
  val = ImageFolderSource(*_scan(val_dir, classes))
  if len(val) == 0:
    raise ValueError(
      f"data.data_dir: {val_dir} has no class folders with images; allowed: "
      "one subfolder of images per train/ class"
    )
  return train, val, classes


def write_class_names(workdir: str, class_names: list[str]) -> None:
  """Records index -> class folder name as ``classes.json`` in the workdir."""
  with open(os.path.join(workdir, CLASSES_FILE), "w") as f:
    json.dump(class_names, f, indent=0)
