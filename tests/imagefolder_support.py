"""Writes small image folders (and a prepared TFDS imagenette) of variable-size JPEGs and PNGs."""

from __future__ import annotations

import io
import pathlib

import numpy as np
from PIL import Image
from skimage import data as skdata

PHOTOS = (skdata.astronaut, skdata.chelsea, skdata.coffee)


def random_photo(rng: np.random.Generator, min_side: int = 24, max_side: int = 80) -> Image.Image:
  """A random crop of a scikit-image sample photograph, resized to a random size."""
  photo = PHOTOS[int(rng.integers(len(PHOTOS)))]()
  h, w = photo.shape[:2]
  ch, cw = int(rng.integers(h // 3, h + 1)), int(rng.integers(w // 3, w + 1))
  top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
  size = (int(rng.integers(min_side, max_side + 1)), int(rng.integers(min_side, max_side + 1)))
  return Image.fromarray(photo[top : top + ch, left : left + cw]).resize(size)


def write_image(path: pathlib.Path, image: Image.Image, kind: str) -> None:
  """``kind``: rgb/grey/cmyk JPEG (``.jpg``) or rgb/grey/palette/rgba PNG (``.png``)."""
  mode = {"rgb": "RGB", "grey": "L", "cmyk": "CMYK", "palette": "P", "rgba": "RGBA"}[kind]
  image = image.convert(mode)
  if path.suffix == ".jpg":
    image.save(path, quality=90)
  else:
    image.save(path)


def make_imagefolder(
  root: pathlib.Path,
  *,
  classes=("cat", "dog", "fish"),
  per_class=(8, 3),
  corrupt: bool = True,
  seed: int = 0,
) -> pathlib.Path:
  """``root/{train,val}/<class>/`` of mixed JPEG/PNG files; one truncated JPEG in train/."""
  rng = np.random.default_rng(seed)
  kinds = [
    (".jpg", "rgb"),
    (".png", "rgb"),
    (".jpg", "grey"),
    (".png", "grey"),
    (".jpg", "cmyk"),
    (".png", "palette"),
    (".png", "rgba"),
    (".jpg", "rgb"),
  ]
  for split, count in zip(("train", "val"), per_class, strict=True):
    for name in classes:
      folder = root / split / name
      folder.mkdir(parents=True)
      for i in range(count):
        suffix, kind = kinds[i % len(kinds)]
        write_image(folder / f"{i:03d}{suffix}", random_photo(rng), kind)
  if corrupt:
    good = (root / "train" / classes[0] / "000.jpg").read_bytes()
    (root / "train" / classes[0] / "zz_truncated.jpg").write_bytes(good[: len(good) // 3])
  return root


def write_tfds_imagenette(
  data_dir: pathlib.Path, *, num_train: int = 12, num_val: int = 5, seed: int = 0
) -> None:
  """A real prepared TFDS ``imagenette`` (ArrayRecord files, dataset_info.json) of random photos.

  Written without TensorFlow: ``tf.train.Example`` protos from TFDS's own proto
  module, ArrayRecord files from ``array_record``, the metadata by
  ``DatasetInfo.write_to_directory``, exactly the files ``download_and_prepare``
  leaves (labels cycle through the 10 classes).
  """
  import tensorflow_datasets as tfds
  from array_record.python.array_record_module import ArrayRecordWriter
  from tensorflow_datasets.proto import tf_example_pb2

  builder = tfds.builder("imagenette", data_dir=str(data_dir))
  pathlib.Path(builder.data_dir).mkdir(parents=True)
  rng = np.random.default_rng(seed)
  template = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
  splits = []
  for split, count in (("train", num_train), ("validation", num_val)):
    writer = ArrayRecordWriter(
      f"{builder.data_dir}/imagenette-{split}.array_record-00000-of-00001", "group_size:1"
    )
    for i in range(count):
      buffer = io.BytesIO()
      random_photo(rng).convert("RGB").save(buffer, format="JPEG", quality=90)
      example = tf_example_pb2.Example()
      example.features.feature["image"].bytes_list.value.append(buffer.getvalue())
      example.features.feature["label"].int64_list.value.append(i % 10)
      writer.write(example.SerializeToString())
    writer.close()
    splits.append(
      tfds.core.SplitInfo(
        name=split,
        shard_lengths=[count],
        num_bytes=0,
        filename_template=tfds.core.ShardedFileTemplate(
          data_dir=builder.data_dir,
          template=template,
          dataset_name="imagenette",
          split=split,
          filetype_suffix="array_record",
        ),
      )
    )
  builder.info.set_splits(tfds.core.SplitDict(splits))
  builder.info.set_file_format("array_record", override=True)
  builder.info.write_to_directory(builder.data_dir)
