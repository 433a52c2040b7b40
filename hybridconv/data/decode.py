"""Encoded images (JPEG, PNG) to RGB uint8 arrays, at reduced size where that loses nothing.

Decoder choice, by measurement (``experiments/benchmarks/decode_benchmark.py``,
~465x411 quality-90 JPEGs, one core, decode + 224 random-resized crop + flip
with the same OpenCV resize): simplejpeg (libjpeg-turbo) 316 img/s, Pillow
with ``Image.draft`` 191 img/s; torchvision's Pillow pipeline 155 img/s. Both
decoders use libjpeg-turbo and its DCT scaling (1/2, 1/4, 1/8) when the crop
needs fewer pixels than the file has; simplejpeg is faster because it decodes
straight into a numpy array while Pillow decodes into its own image buffer and
then converts and copies. So JPEGs go through simplejpeg; everything else, and
the JPEGs simplejpeg refuses (CMYK/YCCK), through Pillow.

Reduced-size decoding is exact in the sense that matters here: the decoder is
asked for at least as many pixels as the final resize reads, so the output
is a downscale of a downscale, never an upscale of a too-small decode.
"""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image

_JPEG_MAGIC = b"\xff\xd8\xff"


class DecodeError(ValueError):
  """An image that cannot be decoded (corrupt, truncated, or not an image)."""


def is_jpeg(data: bytes) -> bool:
  return bytes(data[:3]) == _JPEG_MAGIC


def image_size(data: bytes) -> tuple[int, int]:
  """``(height, width)`` from the header alone (no pixel decoding).

  Raises:
    DecodeError: the bytes are not a readable JPEG/PNG/... header.
  """
  if is_jpeg(data):
    try:
      height, width, _, _ = simplejpeg.decode_jpeg_header(data)
      return int(height), int(width)
    except ValueError:
      pass  # e.g. CMYK: Pillow reads those headers
  try:
    with Image.open(io.BytesIO(data)) as image:
      width, height = image.size
  except Exception as e:  # Pillow raises several types for bad data
    raise DecodeError(f"unreadable image header: {e}") from e
  return int(height), int(width)


def decode_rgb_pillow(data: bytes, min_height: int, min_width: int) -> np.ndarray:
  """Pillow only: :func:`decode_rgb` for non-JPEGs, and the benchmark's alternative."""
  try:
    with Image.open(io.BytesIO(data)) as image:
      if image.format == "JPEG" and (min_height or min_width):
        # draft() picks the largest DCT scaling whose size is >= the request.
        image.draft("RGB", (max(min_width, 1), max(min_height, 1)))
      # Greyscale, palette, CMYK, alpha and 16-bit modes all become RGB here.
      rgb = image.convert("RGB") if image.mode != "RGB" else image
      rgb.load()
      return np.asarray(rgb)
  except Exception as e:  # truncated files raise OSError, garbage UnidentifiedImageError
    raise DecodeError(f"undecodable image: {e}") from e


def decode_rgb(data: bytes, min_height: int = 0, min_width: int = 0) -> np.ndarray:
  """Decodes to ``uint8 (h, w, 3)`` RGB with ``h >= min_height`` and ``w >= min_width``.

  JPEGs are decoded at the smallest DCT scale that keeps both minimums (0 =
  full size); other formats always at full size.

  Raises:
    DecodeError: corrupt or truncated data.
  """
  if is_jpeg(data):
    try:
      # min_factor=2: scalings between 1/2 and 1 (e.g. 7/8) decode slower than full size.
      return simplejpeg.decode_jpeg(
        data, colorspace="RGB", min_height=min_height, min_width=min_width, min_factor=2
      )
    except ValueError:
      pass  # CMYK/YCCK or a damaged file: Pillow converts the first and refuses the second
  return decode_rgb_pillow(data, min_height, min_width)
