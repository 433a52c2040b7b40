"""Decode + random-resized crop + flip throughput on ImageNet-like JPEGs, side by side.

The images: JPEGs of about 500x375 (ImageNet's typical size), quality 90, cut
at random from scikit-image's sample photographs and resized at random.

The pipelines, each turning JPEG bytes into a 224x224x3 uint8 crop with the
same random-resized-crop boxes and flips:

* ``torchvision_pil`` (the baseline): what torchvision's ``ImageFolder`` + ``RandomResizedCrop`` +
  ``RandomHorizontalFlip`` run (``pil_loader``: full decode and ``convert('RGB')``;
  ``F.resized_crop``: ``crop`` then bilinear ``resize``; ``transpose``), written
  out in Pillow so torch need not be installed;
* ``sj_reduced+pil_resize``: simplejpeg (libjpeg-turbo) decoding at reduced size
  where the crop allows, then Pillow's antialiased resize of the box;
* ``pil_draft+cv2_resize``: Pillow decoding at reduced size (``Image.draft``),
  OpenCV resize (hybridconv's crop code with Pillow as the decoder);
* ``sj_full+cv2_resize``: simplejpeg at full size, OpenCV resize;
* ``sj_reduced+cv2_resize``: hybridconv's pipeline (``crops.train_crop``).

Reported: images/s on one core (best of ``--rounds``, entries interleaved so that
load from other processes hits all alike), the ratio to ``torchvision_pil``,
then images/s for 1, 2, ... worker processes up to the cores, and each
pipeline's mean absolute difference per pixel and channel (0-255 levels) from the
baseline's crop with the same box and flip: reduced-size decoding and the
resize must not change the picture beyond resampling noise).

    PYTHONPATH=. .venv/bin/python experiments/benchmarks/decode_benchmark.py [--images 300]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import time

import numpy as np
from PIL import Image
from skimage import data as skdata

from hybridconv.data import crops, decode

SIZE = 224
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def make_jpegs(count: int, seed: int = 0) -> list[bytes]:
  """``count`` quality-90 JPEGs of about 500x375 cut from scikit-image's sample photographs."""
  rng = np.random.default_rng(seed)
  photos = [getattr(skdata, name)() for name in PHOTOS]
  out = []
  for _ in range(count):
    photo = photos[int(rng.integers(len(photos)))]
    h, w = photo.shape[:2]
    ch, cw = int(rng.integers(h // 2, h + 1)), int(rng.integers(w // 2, w + 1))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    size = (int(rng.integers(450, 551)), int(rng.integers(330, 421)))
    if rng.random() < 0.3:
      size = size[::-1]  # some portrait images
    image = Image.fromarray(photo[top : top + ch, left : left + cw]).resize(size, Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    out.append(buffer.getvalue())
  return out


def torchvision_pil(data: bytes, rng: np.random.Generator) -> np.ndarray:
  """torchvision's ImageFolder + RandomResizedCrop + RandomHorizontalFlip, in Pillow."""
  image = Image.open(io.BytesIO(data)).convert("RGB")
  top, left, h, w = crops.random_resized_box(rng, image.height, image.width, SCALE, RATIO)
  top, left, h, w = int(top), int(left), int(h), int(w)
  image = image.crop((left, top, left + w, top + h)).resize((SIZE, SIZE), Image.BILINEAR)
  if rng.random() < 0.5:
    image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  return np.asarray(image)


def _full_size(data, min_height, min_width):
  return decode.decode_rgb(data)


def _pillow_resize(data: bytes, rng: np.random.Generator) -> np.ndarray:
  """simplejpeg at reduced size, then Pillow's antialiased resize instead of OpenCV's."""
  height, width = decode.image_size(data)
  top, left, h, w = crops.random_resized_box(rng, height, width, SCALE, RATIO)
  pixels = decode.decode_rgb(
    data, min_height=-(-height * SIZE // int(h)), min_width=-(-width * SIZE // int(w))
  )
  sy, sx = pixels.shape[0] / height, pixels.shape[1] / width
  box = (left * sx, top * sy, (left + w) * sx, (top + h) * sy)
  out = np.asarray(Image.fromarray(pixels).resize((SIZE, SIZE), Image.BILINEAR, box=box))
  return out[:, ::-1] if rng.random() < 0.5 else out


def _ours(decoder):
  return lambda d, r: crops.train_crop(
    d, r, size=SIZE, scale=SCALE, ratio=RATIO, flip=True, decoder=decoder
  )


PIPELINES = {
  "torchvision_pil": torchvision_pil,
  "sj_reduced+pil_resize": _pillow_resize,
  "pil_draft+cv2_resize": _ours(decode.decode_rgb_pillow),
  "sj_full+cv2_resize": _ours(_full_size),
  "sj_reduced+cv2_resize": _ours(decode.decode_rgb),  # hybridconv's pipeline
}


def _run(name: str, images: list[bytes]) -> int:
  fn = PIPELINES[name]
  for i, data in enumerate(images):
    out = fn(data, crops.crop_rng(0, 0, i))
    assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8, out.shape
  return len(images)


def _rate_one_core(name: str, images: list[bytes]) -> float:
  start = time.perf_counter()
  _run(name, images)
  return len(images) / (time.perf_counter() - start)


_IMAGES: list[bytes] = []


def _init(images: list[bytes], size: int) -> None:
  global _IMAGES, SIZE
  _IMAGES, SIZE = images, size


def _worker_chunk(args: tuple[str, int, int]) -> int:
  name, start, stop = args
  return _run(name, _IMAGES[start:stop])


def _rate_workers(pool, name: str, workers: int, count: int) -> float:
  chunks = [(name, s, min(s + 16, count)) for s in range(0, count, 16)]
  start = time.perf_counter()
  done = sum(pool.map(_worker_chunk, chunks, chunksize=1))
  return done / (time.perf_counter() - start)


def mean_abs_error(images: list[bytes], name: str) -> float:
  """Mean absolute pixel difference from torchvision_pil's crop (same box, same flip)."""
  errors = []
  for i, data in enumerate(images[:50]):
    reference = torchvision_pil(data, crops.crop_rng(0, 0, i)).astype(np.float32)
    got = PIPELINES[name](data, crops.crop_rng(0, 0, i))
    errors.append(np.abs(got.astype(np.float32) - reference).mean())
  return float(np.mean(errors))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--images", type=int, default=300)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--size", type=int, default=SIZE, help="crop side (224: ImageNet)")
  args = parser.parse_args()
  _init([], args.size)
  images = make_jpegs(args.images)
  sizes = [decode.image_size(d) for d in images]
  width, height = np.mean([s[1] for s in sizes]), np.mean([s[0] for s in sizes])
  print(
    f"{SIZE}x{SIZE} crops of {len(images)} JPEGs, quality 90, mean {width:.0f}x{height:.0f} px,"
    f" {np.mean([len(d) for d in images]) / 1e3:.0f} kB each"
  )
  rates = {name: [] for name in PIPELINES}
  for _ in range(args.rounds):
    for name in PIPELINES:
      rates[name].append(_rate_one_core(name, images))
  base = max(rates["torchvision_pil"])
  print("\none core (best of rounds):")
  print(f"  {'pipeline':22s} {'img/s':>8s} {'x torchvision_pil':>18s} {'|diff| to it':>13s}")
  for name in PIPELINES:
    best = max(rates[name])
    err = mean_abs_error(images, name)
    print(f"  {name:22s} {best:8.0f} {best / base:18.2f} {err:13.2f}")
  cores = os.cpu_count() or 1
  print(f"\nworker processes (up to the {cores} cores), img/s:")
  print(f"  {'workers':>7s} " + " ".join(f"{n:>22s}" for n in PIPELINES))
  context = multiprocessing.get_context("spawn")
  for workers in range(1, cores + 1):
    with context.Pool(workers, initializer=_init, initargs=(images, args.size)) as pool:
      pool.map(_worker_chunk, [("torchvision_pil", 0, 4)] * workers)  # warm up the workers
      row = [
        max(_rate_workers(pool, name, workers, len(images)) for _ in range(2)) for name in PIPELINES
      ]
    print(f"  {workers:7d} " + " ".join(f"{r:22.0f}" for r in row))


if __name__ == "__main__":
  main()
