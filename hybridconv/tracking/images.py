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
stay visible as pixels) to about ``tile_pixels`` (64) per side, so 32 filters of
5x5 make a grid of about 450 pixels a side. Every tile carries its output
channel's number; gaps and empty cells are mid-grey (zero), never black, so
black always means a filter's most negative value. The groups of a hybrid
layer (its kernel sources) get one frame colour each and a legend under the
grid, so PNGs, GIF frames and W&B images all say which tiles are which.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence

import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from hybridconv.analysis import gabor_fit
from hybridconv.run_layout import FILTERS_DIR

GIF_SUFFIX = ".gif"
_FRAME_PATTERN = re.compile(r"step_(\d+)\.png$")
MID_GREY = 128  # the colour of zero in every tile
GAP, FRAME, LABEL = 4, 2, 13  # pixels: between cells, tile frame, number strip above a tile
NO_GROUP_COLOUR = (64, 64, 64)
# Frame colours of a layer's kernel groups, in channel order (matplotlib's
# tab10 without its grey, which would vanish against the mid-grey background).
GROUP_COLOURS = (
  (31, 119, 180),
  (255, 127, 14),
  (44, 160, 44),
  (214, 39, 40),
  (148, 103, 189),
  (140, 86, 75),
  (227, 119, 194),
  (188, 189, 34),
  (23, 190, 207),
)


def spatial_kernels(kernel_hwio: np.ndarray) -> np.ndarray:
  """``(kh, kw, cin', cout)`` tiles to show: cin' = 3 for RGB, else 1 (see module docstring)."""
  kernel = np.asarray(kernel_hwio, np.float32)
  if kernel.ndim != 4:
    raise ValueError(f"kernel must have shape (kh, kw, cin, cout), got shape {kernel.shape}")
  if kernel.shape[2] in (1, 3):
    return kernel
  spatial, _, _ = gabor_fit.dominant_component(kernel)
  return np.asarray(spatial)[:, :, None, :]


def filter_caption(kernel_hwio: np.ndarray, step: int) -> list[str]:
  """What a filter grid shows: the step, the per-tile scale, and how input channels were folded."""
  lines = [f"step {step}; each tile scaled to its own largest magnitude (0 = mid-grey)"]
  channels = np.shape(kernel_hwio)[2]
  if channels not in (1, 3):
    lines.append(
      f"each tile: the dominant spatial component over the {channels} input channels (rank-1 SVD)"
    )
  return lines


def normalise_tiles(tiles: np.ndarray, shared: bool = False) -> np.ndarray:
  """Symmetric map of ``(kh, kw, c, n)`` floats to uint8 (0 -> 128), per filter or shared."""
  scale = np.max(np.abs(tiles), axis=(0, 1, 2, 3) if shared else (0, 1, 2), keepdims=True)
  unit = 0.5 + 0.5 * tiles / np.where(scale > 0, scale, 1.0)
  return np.clip(np.round(unit * 255.0), 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class GridGroup:
  """Output channels ``[start, stop)`` of a layer drawn with one frame colour and legend entry."""

  label: str  # e.g. 'gabor', 'free', 'frozen'
  start: int
  stop: int


@dataclasses.dataclass(frozen=True)
class GridLayout:
  """Where each tile of a filter grid lies: cells of label strip + frame + tile, grey gaps.

  Attributes:
    count: tiles drawn; cols, rows: the grid's shape (row-major order).
    tile: (height, width) of one upscaled tile in pixels; factor: the upscaling.
  """

  count: int
  cols: int
  rows: int
  tile: tuple[int, int]
  factor: int
  gap: int = GAP
  frame: int = FRAME
  label: int = LABEL

  @classmethod
  def make(cls, kernel_size: tuple[int, int], count: int, tile_pixels: int) -> GridLayout:
    kh, kw = kernel_size
    factor = max(1, math.ceil(tile_pixels / max(kh, kw)))
    cols = math.ceil(math.sqrt(count))
    return cls(count, cols, math.ceil(count / cols), (kh * factor, kw * factor), factor)

  @property
  def cell(self) -> tuple[int, int]:
    return (self.label + self.tile[0] + 2 * self.frame, self.tile[1] + 2 * self.frame)

  @property
  def size(self) -> tuple[int, int]:
    """(height, width) of the tile area (without legend)."""
    return (
      self.gap + self.rows * (self.cell[0] + self.gap),
      self.gap + self.cols * (self.cell[1] + self.gap),
    )

  def box(self, i: int) -> tuple[int, int]:
    """(top, left) pixel of tile ``i`` (inside its frame)."""
    top = self.gap + (i // self.cols) * (self.cell[0] + self.gap) + self.label + self.frame
    left = self.gap + (i % self.cols) * (self.cell[1] + self.gap) + self.frame
    return top, left


def _font(size: int = 11) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
  # Pillow's bundled font (a bitmap one where FreeType is missing): no system fonts needed.
  return ImageFont.load_default(size=size)


def _legend(
  groups: Sequence[GridGroup], count: int, caption: Sequence[str]
) -> list[tuple[str, tuple[int, int, int] | None]]:
  """Legend lines ``(text, swatch colour or None)``: one per group shown, then the caption."""
  lines = []
  for i, group in enumerate(groups):
    if group.start < count:
      last = min(group.stop, count) - 1
      lines.append(
        (f"{group.label}: filters {group.start}-{last}", GROUP_COLOURS[i % len(GROUP_COLOURS)])
      )
  return lines + [(text, None) for text in caption]


def kernel_grid(
  kernel_hwio: np.ndarray,
  *,
  max_filters: int = 256,
  tile_pixels: int = 64,
  groups: Sequence[GridGroup] = (),
  caption: Sequence[str] = (),
  shared_scale: bool = False,
) -> np.ndarray:
  """A uint8 RGB ``(H, W, 3)`` grid image of a conv layer's filters.

  Each tile is upscaled by an integer factor (nearest neighbour) to about
  ``tile_pixels`` a side and numbered by its output channel above it. The
  gaps, and the cells of a last row left empty, are mid-grey: the colour of
  zero, so nothing but a filter's own values is dark or bright. With
  ``groups`` each tile gets a frame in its group's colour and a legend below
  the grid names the groups (a hybrid layer's sources); without, frames are
  dark grey and there is no legend. ``caption`` lines follow the legend.

  Args:
    kernel_hwio: ``(kh, kw, cin, cout)`` kernel.
    max_filters: show only the first this many output filters.
    tile_pixels: upscale tiles by an integer factor to about this size.
    groups: channel ranges of the layer's kernel sources, in channel order.
    caption: extra lines under the legend (e.g. the scale of a change grid).
    shared_scale: one scale for all tiles (the layer's largest magnitude),
      so tiles compare with each other; default each tile on its own.
  """
  if max_filters < 1 or tile_pixels < 1:
    raise ValueError(
      f"need max_filters >= 1 and tile_pixels >= 1; got {max_filters}, {tile_pixels}"
    )
  tiles = spatial_kernels(kernel_hwio)[..., :max_filters]
  layout = GridLayout.make(tiles.shape[:2], tiles.shape[-1], tile_pixels)
  pixels = normalise_tiles(tiles, shared=shared_scale)
  if pixels.shape[2] == 1:
    pixels = pixels.repeat(3, axis=2)
  pixels = pixels.repeat(layout.factor, axis=0).repeat(layout.factor, axis=1)
  font = _font()
  legend = _legend(groups, layout.count, caption)
  line = 14
  text_width = max([int(font.getlength(t)) + 20 for t, _ in legend] or [0])
  height, width = layout.size
  canvas = Image.new(
    "RGB",
    (
      max(width, text_width + layout.gap),
      height + len(legend) * line + (layout.gap if legend else 0),
    ),
    (MID_GREY,) * 3,
  )
  draw = ImageDraw.Draw(canvas)
  for i in range(layout.count):
    top, left = layout.box(i)
    colour = next(
      (
        GROUP_COLOURS[g % len(GROUP_COLOURS)]
        for g, group in enumerate(groups)
        if group.start <= i < group.stop
      ),
      NO_GROUP_COLOUR,
    )
    th, tw = layout.tile
    f = layout.frame
    draw.rectangle((left - f, top - f, left + tw + f - 1, top + th + f - 1), fill=colour)
    canvas.paste(Image.fromarray(pixels[..., i]), (left, top))
    draw.text((left - f, top - f - layout.label), str(i), fill=(255, 255, 255), font=font)
  for j, (text, swatch) in enumerate(legend):
    y = height + j * line
    if swatch is not None:
      draw.rectangle((layout.gap, y + 2, layout.gap + 10, y + 12), fill=swatch)
    draw.text(
      (layout.gap + (16 if swatch is not None else 0), y), text, fill=(255, 255, 255), font=font
    )
  return np.asarray(canvas)


def frame_steps(directory: str) -> list[tuple[int, str]]:
  """``(step, path)`` of the ``step_XXXXXXX.png`` frames in ``directory``, by step.

  A missing directory has no frames: a layer whose channels are all frozen never
  gets a ``filters_change`` folder, and its report must still be written.
  """
  if not os.path.isdir(directory):
    return []
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
  canvas = Image.new("RGB", (max(size[1], 90), size[0] + caption), (MID_GREY,) * 3)
  ImageDraw.Draw(canvas).rectangle((0, 0, canvas.size[0], caption - 1), fill=(255, 255, 255))
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
  iio.imwrite(
    output,
    images,
    extension=GIF_SUFFIX,
    loop=0,
    duration=durations if len(durations) > 1 else durations[0],
  )
  return output


def write_animations(
  workdir: str, *, root: str = FILTERS_DIR, frame_seconds: float = 0.4
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
    gif = write_animation(
      directory, directory.rstrip(os.sep) + GIF_SUFFIX, frame_seconds=frame_seconds
    )
    if gif:
      written.append(gif)
  return written
