"""Reader for the IDX files of MNIST and Fashion-MNIST (plain or gzipped).

The IDX format (LeCun et al.) is a big-endian header -- two zero bytes, a
dtype byte (0x08 = unsigned byte), the number of dimensions, then one uint32
per dimension -- followed by the raw array. Every check below exists because a
wrong file would otherwise load as plausible-looking noise: the magic number
catches swapped image/label files, and the exact length catches truncated
downloads (the commonest failure) as well as files with trailing garbage.

Debian packages the original Fashion-MNIST files as ``dataset-fashion-mnist``
(installed into ``/usr/share/datasets/fashion-mnist``), which is the default
dataset of this project because it needs no network at training time.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import zlib

import numpy as np

from hybridconv.data.dataset import ArrayDataset

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, rows, cols)
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)

ENV_VAR = "HYBRIDCONV_IDX_DIR"
# Where Debian's packages put the files; MNIST has no Debian package, so its
# default directory exists only if the user creates it.
DEFAULT_DIRS = {
  "fashion_mnist": "/usr/share/datasets/fashion-mnist",
  "mnist": "/usr/share/datasets/mnist",
}
NUM_CLASSES = {"fashion_mnist": 10, "mnist": 10}
IMAGE_SHAPE = (28, 28, 1)  # both datasets: 28x28 grey images
# IDX file stems per split, as published (t10k = the 10k-example test set).
_STEMS = {
  "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_data_dir(name: str, data_dir: str = "") -> pathlib.Path:
  """The directory to read: ``data_dir``, else ``$HYBRIDCONV_IDX_DIR``, else Debian's."""
  check_idx_name(name)
  return pathlib.Path(data_dir or os.environ.get(ENV_VAR) or DEFAULT_DIRS[name])


def check_idx_name(name: str) -> None:
  if name not in NUM_CLASSES:
    raise ValueError(
      f"data.name {name!r} is not an IDX dataset; allowed with data.source='idx': "
      f"{sorted(NUM_CLASSES)}"
    )


def parse_idx(raw: bytes, *, expected_magic: int, source: str) -> np.ndarray:
  """Parses one IDX file's bytes into a uint8 array, checking header and exact length.

  Args:
    raw: the (decompressed) file content.
    expected_magic: ``IMAGES_MAGIC`` or ``LABELS_MAGIC``.
    source: the file name, used in error messages.

  Returns:
    A read-only uint8 array of the dimensions given in the header.
  """
  if len(raw) < 4:
    raise ValueError(f"{source}: {len(raw)} bytes is too short for an IDX header (at least 4)")
  magic = int.from_bytes(raw[:4], "big")
  if magic != expected_magic:
    raise ValueError(
      f"{source}: IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
      f"(unsigned bytes, {expected_magic & 0xFF} dimensions); is this the right file?"
    )
  ndim = raw[3]
  header_len = 4 + 4 * ndim
  if len(raw) < header_len:
    raise ValueError(f"{source}: truncated header, expected {header_len} bytes, found {len(raw)}")
  dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
  expected_len = header_len + int(np.prod(dims, dtype=np.int64))
  if len(raw) != expected_len:
    kind = "truncated" if len(raw) < expected_len else "over-long"
    raise ValueError(
      f"{source}: {kind} file: header says dimensions {dims}, so {expected_len} bytes are "
      f"expected, found {len(raw)}"
    )
  return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def _find_file(directory: pathlib.Path, stem: str) -> pathlib.Path | None:
  """The plain file if present (faster to read), else the gzipped one, else None."""
  for candidate in (directory / stem, directory / f"{stem}.gz"):
    if candidate.is_file():
      return candidate
  return None


def _read_bytes(path: pathlib.Path) -> bytes:
  if path.suffix == ".gz":
    try:
      with gzip.open(path, "rb") as f:
        return f.read()
    # gzip.BadGzipFile is an OSError; a damaged deflate stream raises zlib.error.
    except (OSError, EOFError, zlib.error) as e:
      raise ValueError(f"{path}: not a valid gzip file ({e})") from e
  return path.read_bytes()


def _missing_message(name: str, directory: pathlib.Path, missing: list[str]) -> str:
  return (
    f"{name} IDX files not found in {directory}: missing {', '.join(missing)} (plain or .gz). "
    "Get Fashion-MNIST with `apt-get install dataset-fashion-mnist` (Debian; installs into "
    f"{DEFAULT_DIRS['fashion_mnist']}) or download the four IDX files, then point to their "
    f"directory with the environment variable {ENV_VAR} or --config.data.data_dir=DIR."
  )


def read_idx_split(
  directory: pathlib.Path, split: str, num_classes: int, name: str = "idx"
) -> tuple[np.ndarray, np.ndarray]:
  """Reads one split: images uint8 ``(N, H, W, 1)`` and labels int32 ``(N,)``."""
  images_stem, labels_stem = _STEMS[split]
  paths = {stem: _find_file(directory, stem) for stem in (images_stem, labels_stem)}
  missing = [stem for stem, path in paths.items() if path is None]
  if missing:
    raise FileNotFoundError(_missing_message(name, directory, missing))
  images = parse_idx(
    _read_bytes(paths[images_stem]), expected_magic=IMAGES_MAGIC, source=str(paths[images_stem])
  )
  labels = parse_idx(
    _read_bytes(paths[labels_stem]), expected_magic=LABELS_MAGIC, source=str(paths[labels_stem])
  )
  if len(images) != len(labels):
    raise ValueError(
      f"{paths[images_stem]} holds {len(images)} images but {paths[labels_stem]} "
      f"holds {len(labels)} labels; the counts must match"
    )
  if len(labels) and int(labels.max()) >= num_classes:
    raise ValueError(
      f"{paths[labels_stem]}: labels must lie in [0, {num_classes}), found {int(labels.max())}"
    )
  return images[..., None], labels.astype(np.int32)


def load_idx_dataset(name: str = "fashion_mnist", data_dir: str = "") -> ArrayDataset:
  """Loads MNIST or Fashion-MNIST from IDX files.

  Args:
    name: ``'fashion_mnist'`` or ``'mnist'`` (same file names, 10 classes each).
    data_dir: directory holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``;
      empty means ``$HYBRIDCONV_IDX_DIR`` or else the Debian package's directory.

  Returns:
    The dataset with images of shape ``(28, 28, 1)``.
  """
  directory = idx_data_dir(name, data_dir)
  train_images, train_labels = read_idx_split(directory, "train", NUM_CLASSES[name], name)
  test_images, test_labels = read_idx_split(directory, "test", NUM_CLASSES[name], name)
  return ArrayDataset(
    train_images, train_labels, test_images, test_labels, num_classes=NUM_CLASSES[name], name=name
  )
