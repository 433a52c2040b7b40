"""Writes the tiny *real* prepared TFDS dataset that the tests read without mocks.

Run once, with TensorFlow available (the ``tfds-prepare`` extra), from the repo root::

  python3.12 -m venv /tmp/tfvenv
  /tmp/tfvenv/bin/pip install tensorflow-cpu tensorflow-datasets array_record
  /tmp/tfvenv/bin/python tests/data/make_tiny_tfds.py

It runs TFDS's own ``fashion_mnist`` builder (version, features, class names
and ArrayRecord writer unchanged) with its download step replaced by reading
the first ``NUM_TRAIN`` / ``NUM_TEST`` examples of the local Fashion-MNIST IDX
files (Debian's ``dataset-fashion-mnist``). The result, under
``tests/data/tfds/fashion_mnist/3.0.1/``, is exactly what ``download_and_prepare``
writes for the full dataset, only smaller (37 KB of records; the ArrayRecord
writer pads each shard file to 128 KB of zeros, which git compresses away), so
the tests exercise TFDS's real prepared-dataset path: ``is_prepared``,
``dataset_info.json``, ArrayRecord shards and PNG decoding.

Why a patched builder rather than a hand-written one: the tests then read the
dataset under its registered name, exactly as ``data.name='fashion_mnist'``
does in a real run. The script is not part of the library or CI.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist

NUM_TRAIN = 48
NUM_TEST = 20  # not a multiple of the tests' eval batch: the last batch is padded
IDX_DIR = os.environ.get("HYBRIDCONV_IDX_DIR", "/usr/share/datasets/fashion-mnist")
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tfds")


def _read_idx(path: str, count: int, header: int, item_shape: tuple[int, ...]) -> np.ndarray:
  with gzip.open(path, "rb") as f:
    raw = f.read(header + count * int(np.prod(item_shape)))
  return np.frombuffer(raw[header:], np.uint8).reshape((count, *item_shape))


def _split_generators(self, dl_manager):
  del dl_manager  # no download: the examples come from the local IDX files
  return [
    tfds.core.SplitGenerator(
      name=tfds.Split.TRAIN, gen_kwargs={"prefix": "train", "count": NUM_TRAIN}
    ),
    tfds.core.SplitGenerator(
      name=tfds.Split.TEST, gen_kwargs={"prefix": "t10k", "count": NUM_TEST}
    ),
  ]


def _generate_examples(self, prefix: str, count: int):
  images = _read_idx(
    os.path.join(IDX_DIR, f"{prefix}-images-idx3-ubyte.gz"), count, 16, (28, 28, 1)
  )
  labels = _read_idx(os.path.join(IDX_DIR, f"{prefix}-labels-idx1-ubyte.gz"), count, 8, ())
  for index, (image, label) in enumerate(zip(images, labels, strict=True)):
    yield index, {"image": image, "label": int(label)}


def main() -> int:
  mnist.FashionMNIST._split_generators = _split_generators
  mnist.FashionMNIST._generate_examples = _generate_examples
  target = os.path.join(OUT_DIR, "fashion_mnist")
  shutil.rmtree(target, ignore_errors=True)
  builder = tfds.builder("fashion_mnist", data_dir=OUT_DIR)
  builder.download_and_prepare(
    file_format="array_record",
    download_config=tfds.download.DownloadConfig(download_mode=tfds.GenerateMode.FORCE_REDOWNLOAD),
  )
  # TFDS leaves an empty downloads/ folder behind; it is not part of the dataset.
  shutil.rmtree(os.path.join(OUT_DIR, "downloads"), ignore_errors=True)
  for directory, _, files in os.walk(target):
    for name in sorted(files):
      path = os.path.join(directory, name)
      print(f"{os.path.getsize(path):8d}  {os.path.relpath(path, OUT_DIR)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
