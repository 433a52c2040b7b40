"""Writes small image folders of variable-size JPEGs and PNGs for the image-folder tests."""

from __future__ import annotations

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
  return Image.fromarray(photo[top:top + ch, left:left + cw]).resize(size)


def write_image(path: pathlib.Path, image: Image.Image, kind: str) -> None:
  """``kind``: rgb/grey/cmyk JPEG (``.jpg``) or rgb/grey/palette/rgba PNG (``.png``)."""
  mode = {"rgb": "RGB", "grey": "L", "cmyk": "CMYK", "palette": "P", "rgba": "RGBA"}[kind]
  image = image.convert(mode)
  if path.suffix == ".jpg":
    image.save(path, quality=90)
  else:
    image.save(path)


def make_imagefolder(root: pathlib.Path, *, classes=("cat", "dog", "fish"), per_class=(8, 3),
                     corrupt: bool = True, seed: int = 0) -> pathlib.Path:
  """``root/{train,val}/<class>/`` of mixed JPEG/PNG files; one truncated JPEG in train/."""
  rng = np.random.default_rng(seed)
  kinds = [(".jpg", "rgb"), (".png", "rgb"), (".jpg", "grey"), (".png", "grey"),
           (".jpg", "cmyk"), (".png", "palette"), (".png", "rgba"), (".jpg", "rgb")]
  for split, count in zip(("train", "val"), per_class, strict=True):
    for name in classes:
      folder = root / split / name
      folder.mkdir(parents=True)
      for i in range(count):
        suffix, kind = kinds[i % len(kinds)]
        write_image(folder / f"{i:03d}{suffix}", random_photo(rng), kind)
  if corrupt:
    good = (root / "train" / classes[0] / "000.jpg").read_bytes()
    (root / "train" / classes[0] / "zz_truncated.jpg").write_bytes(good[:len(good) // 3])
  return root
