"""Filter grids as uint8 images, and GIF animations of them over training.

A grid shows one tile per output filter, in output-channel order (so the
groups of a hybrid layer are contiguous), left to right and top to bottom.
Each tile is normalised on its own and symmetrically around zero -- zero is
mid-grey (128), the filter's largest magnitude is black or white -- because
filters of one layer differ in scale and a shared scale would leave most of
them flat grey. What a tile shows depends on the input channels:

* 3 inputs: the filter as an RGB colour image (the channels are the image's).
* 1 input: the filter in grey.
* any other number: the filter's dominant spatial component (the first
  singular vector of its ``(kh*kw, cin)`` matrix, scaled by its singular value,
  see :func:`hybridconv.analysis.gabor_fit.dominant_component`): the spatial
  pattern that, times one weight per input channel, best reproduces the
  filter. One tile per (input, output) pair would be ``cin`` times larger and
  unreadable for deep layers; the channel mean cancels out for weights of
  mixed sign.

Small kernels are upscaled by an integer factor (nearest neighbour, so pixels
stay visible as pixels) to about ``tile_pixels`` per side, with a one-pixel
black border between tiles.
"""

from __future__ import annotations

import math
import os
import re

import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageDraw

from hybridconv.analysis import gabor_fit

GIF_SUFFIX = ".gif"
_FRAME_PATTERN = re.compile(r"step_(\d+)\.png$")


def spatial_kernels(kernel_hwio: np.ndarray) -> np.ndarray:
  """``(kh, kw, cin', cout)`` tiles to show: cin' = 3 for RGB, else 1 (see module docstring)."""
  kernel = np.asarray(kernel_hwio, np.float32)
  if kernel.ndim != 4:
    raise ValueError(f"kernel must have shape (kh, kw, cin, cout), got shape {kernel.shape}")
  if kernel.shape[2] in (1, 3):
    return kernel
  spatial, _, _ = gabor_fit.dominant_component(kernel)
  return np.asarray(spatial)[:, :, None, :]


def normalise_tiles(tiles: np.ndarray) -> np.ndarray:
  """Per-filter symmetric map of ``(kh, kw, c, n)`` floats to uint8 (0 -> 128)."""
  scale = np.max(np.abs(tiles), axis=(0, 1, 2), keepdims=True)
  unit = 0.5 + 0.5 * tiles / np.where(scale > 0, scale, 1.0)
  return np.clip(np.round(unit * 255.0), 0, 255).astype(np.uint8)


def kernel_grid(kernel_hwio: np.ndarray, *, max_filters: int = 256, tile_pixels: int = 32,
                border: int = 1) -> np.ndarray:
  """A uint8 ``(H, W, C)`` grid image of a conv layer's filters (C = 3 for RGB inputs, else 1).

  Args:
    kernel_hwio: ``(kh, kw, cin, cout)`` kernel.
    max_filters: show only the first this many output filters.
    tile_pixels: upscale tiles by an integer factor to about this size.
    border: black pixels between and around tiles.
  """
  if max_filters < 1 or tile_pixels < 1 or border < 0:
    raise ValueError(f"need max_filters >= 1, tile_pixels >= 1, border >= 0; got {max_filters}, "
                     f"{tile_pixels}, {border}")
  tiles = spatial_kernels(kernel_hwio)[..., :max_filters]
  kh, kw, channels, n = tiles.shape
  factor = max(1, math.ceil(tile_pixels / max(kh, kw)))
  tiles = normalise_tiles(tiles).repeat(factor, axis=0).repeat(factor, axis=1)
  th, tw = kh * factor, kw * factor
  cols = math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  height, width = border + rows * (th + border), border + cols * (tw + border)
  grid = np.zeros((height, width, channels), np.uint8)
  for i in range(n):
    top = border + (i // cols) * (th + border)
    left = border + (i % cols) * (tw + border)
    grid[top:top + th, left:left + tw] = tiles[..., i]
  return grid


def frame_steps(directory: str) -> list[tuple[int, str]]:
  """``(step, path)`` of the ``step_XXXXXXX.png`` frames in ``directory``, by step."""
  frames = []
  for name in os.listdir(directory):
    match = _FRAME_PATTERN.search(name)
    if match:
      frames.append((int(match.group(1)), os.path.join(directory, name)))
  return sorted(frames)


def _captioned(path: str, step: int, size: tuple[int, int]) -> np.ndarray:
  """An RGB frame padded to ``size`` (H, W) with 'step N' written above it."""
  image = Image.open(path).convert("RGB")
  caption = 14
  canvas = Image.new("RGB", (max(size[1], 90), size[0] + caption), (255, 255, 255))
  canvas.paste(image, (0, caption))
  ImageDraw.Draw(canvas).text((2, 1), f"step {step}", fill=(0, 0, 0))
  return np.asarray(canvas)


def write_animation(directory: str, output: str, *, frame_seconds: float = 0.4) -> str | None:
  """A looping GIF of a layer's filter PNGs, one frame per logged step; None if none."""
  frames = frame_steps(directory)
  if not frames:
    return None
  sizes = [Image.open(p).size for _, p in frames]  # (W, H)
  size = (max(h for _, h in sizes), max(w for w, _ in sizes))
  images = np.stack([_captioned(p, step, size) for step, p in frames])
  # Hold the last frame (the trained filters) three times as long. (Pillow
  # wants a plain number, not a list, for a one-frame GIF.)
  durations = [int(frame_seconds * 1000)] * (len(frames) - 1) + [int(frame_seconds * 3000)]
  iio.imwrite(output, images, extension=GIF_SUFFIX, loop=0,
              duration=durations if len(durations) > 1 else durations[0])
  return output


def write_animations(workdir: str, *, root: str = "filters", frame_seconds: float = 0.4
                     ) -> list[str]:
  """One GIF per layer folder of frames under ``workdir/root``: ``filters/conv1.gif`` etc.

  Returns:
    the written GIF paths (empty if no filter images were logged).
  """
  base = os.path.join(workdir, root)
  written = []
  if not os.path.isdir(base):
    return written
  for directory, _, _ in sorted(os.walk(base)):
    if directory == base:
      continue
    gif = write_animation(directory, directory.rstrip(os.sep) + GIF_SUFFIX,
                          frame_seconds=frame_seconds)
    if gif:
      written.append(gif)
  return written
