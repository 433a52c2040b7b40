"""The figures of a study report (matplotlib, files only; each function returns its path)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from hybridconv.studies import stats  # noqa: E402

Band = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x, mean, low, high


def save(fig, path: str, *, whole_labels: bool = False) -> str:
  """Writes the figure; ``whole_labels``: grow the saved area to every label (long arm names)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if not whole_labels:  # (those figures lay themselves out; the saved area grows to fit)
    fig.tight_layout()
  fig.savefig(path, dpi=110, bbox_inches="tight" if whole_labels else None)
  plt.close(fig)
  return path


def band(x: Sequence[float], samples: Sequence[Sequence[float]]) -> Band:
  """Mean and 95% t-interval of ``samples[i]`` (values over seeds) at each ``x[i]``."""
  summaries = [stats.t_interval(s) for s in samples]
  mean = np.array([s.mean for s in summaries])
  low = np.array([s.ci_low if s.n > 1 else s.mean for s in summaries])
  high = np.array([s.ci_high if s.n > 1 else s.mean for s in summaries])
  return np.asarray(x, float), mean, low, high


_LINE_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D")


def group_styles(groups: Iterable[str]) -> dict[str, dict[str, Any]]:
  """One fixed style (colour, line style, marker) per group, from the sorted set of ``groups``.

  Computed once (for a figure, or for a report's every curve figure from all its arms)
  and used in every panel, so a group keeps its colour where another group is missing
  and a single legend is true for all panels. Up to 10 groups
  take tab10's colours; up to 20, tab20's dark then light shades (the light ones dashed,
  square markers), so no two share a colour; beyond 20 the line style and marker still
  tell them apart.
  """
  names = sorted(set(groups))
  if len(names) <= 10:
    colours = list(matplotlib.colormaps["tab10"].colors)
  else:
    tab20 = matplotlib.colormaps["tab20"].colors
    colours = list(tab20[0::2]) + list(tab20[1::2])
  return {
    name: {
      "color": colours[i % len(colours)],
      "linestyle": _LINE_STYLES[(i // 10) % len(_LINE_STYLES)],
      "marker": _MARKERS[(i // 10) % len(_MARKERS)],
    }
    for i, name in enumerate(names)
  }


def _plot_band(ax, data: Band, label: str, style: Mapping[str, Any]):
  x, mean, low, high = data
  (line,) = ax.plot(x, mean, markersize=3, label=label, **style)
  ax.fill_between(x, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
  return line


def _drawn(styles: Mapping[str, Mapping[str, Any]], groups: Iterable[str]) -> dict:
  """``styles`` of the groups drawn, in the styles' order (the legend's)."""
  groups = set(groups)
  return {name: style for name, style in styles.items() if name in groups}


def _thousands(axis) -> None:
  """Tick labels like ``450k``: six-digit counts of images seen collide at panel width."""
  axis.set_major_formatter(
    matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:g}k" if abs(v) >= 10000 else f"{v:g}")
  )


def _legend_handles(styles: Mapping[str, Mapping[str, Any]]) -> list[Line2D]:
  return [Line2D([], [], markersize=3, label=name, **style) for name, style in styles.items()]


def lines_with_bands(
  series: Mapping[str, Band],
  *,
  title: str,
  xlabel: str,
  ylabel: str,
  path: str,
  log_x: bool = False,
  reference: Mapping[str, float] | None = None,
  styles: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
  """One line with a CI band per arm (e.g. accuracy against training-set size).

  ``styles``: the study's :func:`group_styles` (default: those of ``series``' arms).
  """
  fig, ax = plt.subplots(figsize=(7.5, 4.8))
  styles = _drawn(styles or group_styles(series), series)
  for label, data in series.items():
    _plot_band(ax, data, label, styles[label])
  for label, value in (reference or {}).items():
    ax.axhline(value, color="grey", linestyle=":", linewidth=1)
    ax.annotate(label, (ax.get_xlim()[0], value), fontsize=7, color="grey", va="bottom")
  if log_x:
    ax.set_xscale("log")
  ax.set_title(title)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  ax.legend(handles=_legend_handles(styles), fontsize=7, ncol=2)
  return save(fig, path)


def panels_with_bands(
  panels: Mapping[str, Mapping[str, Band]],
  *,
  title: str,
  xlabel: str,
  ylabel: str,
  path: str,
  sharey: bool = True,
  styles: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
  """A grid of panels (e.g. one per training size or corruption family), arms as banded lines.

  Every panel draws a group in the one style it has in ``styles`` (the study's
  :func:`group_styles`; default: those of the groups drawn), and one legend beside
  the panels names every group drawn anywhere.
  """
  drawn = [name for series in panels.values() for name in series]
  styles = _drawn(styles or group_styles(drawn), drawn)
  count = max(1, len(panels))
  columns = min(count, 3)
  rows = -(-count // columns)
  fig, axes = plt.subplots(
    rows, columns, figsize=(4.6 * columns, 3.6 * rows), sharey=sharey, squeeze=False
  )
  for ax, (name, series) in zip(axes.ravel(), panels.items(), strict=False):
    for label, data in series.items():
      _plot_band(ax, data, label, styles[label])
    ax.set_title(name, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    _thousands(ax.xaxis)
  for ax in axes.ravel()[len(panels) :]:
    ax.axis("off")
  fig.suptitle(title)
  fig.tight_layout()
  fig.legend(
    handles=_legend_handles(styles), loc="upper left", bbox_to_anchor=(1.0, 0.93), fontsize=8
  )
  return save(fig, path, whole_labels=True)


def mosaic_canvas(rows: Sequence[np.ndarray], max_filters: int = 32) -> np.ndarray:
  """Tiles of ``(kh, kw, n)`` arrays as one image: a row per array, each tile divided by its
  own largest magnitude (so in [-1, 1], zero stays zero), NaN in the one-pixel gaps around
  tiles and where a row has fewer tiles than the longest."""
  count = max((min(a.shape[-1], max_filters) for a in rows), default=1)
  kh = max((a.shape[0] for a in rows), default=1)
  kw = max((a.shape[1] for a in rows), default=1)
  canvas = np.full((len(rows) * (kh + 1) + 1, count * (kw + 1) + 1), np.nan)
  for r, tiles in enumerate(rows):
    for c in range(min(count, tiles.shape[-1])):
      tile = np.asarray(tiles[..., c], float)
      scale = float(np.abs(tile).max()) or 1.0
      top, left = 1 + r * (kh + 1), 1 + c * (kw + 1)
      canvas[top : top + tile.shape[0], left : left + tile.shape[1]] = tile / scale
  return canvas


MOSAIC_GAP = "#4a90c8"  # mid blue: neither a grey tile value nor the white page


def kernel_mosaic(
  rows: Mapping[str, np.ndarray], *, title: str, path: str, max_filters: int = 32
) -> str:
  """One row of filter tiles per arm (``(kh, kw, n)`` arrays), each tile scaled on its own.

  Zero is mid-grey in every tile, so sign and structure read alike across arms.
  The tiles are one image (:func:`mosaic_canvas`) drawn by a single ``imshow``: an
  Axes per tile made the study's figure (~400 tiles) take seconds. Its gaps are
  :data:`MOSAIC_GAP`, a colour no grey tile takes, so a constant (white or black) tile
  still reads as a tile.
  """
  names = list(rows)
  canvas = mosaic_canvas([rows[n] for n in names], max_filters)
  tile_height = (canvas.shape[0] - 1) // max(1, len(names))  # kh + 1
  tiles_across = (canvas.shape[1] - 1) / (max((a.shape[1] for a in rows.values()), default=1) + 1)
  image_width = 0.42 * tiles_across  # inches
  fig, ax = plt.subplots(
    figsize=(image_width + 1.8, image_width * canvas.shape[0] / canvas.shape[1] + 0.7)
  )
  cmap = matplotlib.colormaps["gray"].with_extremes(bad=MOSAIC_GAP)
  ax.imshow(canvas, cmap=cmap, vmin=-1.0, vmax=1.0, interpolation="nearest")
  ax.set_xticks([])
  ax.set_yticks([r * tile_height + tile_height / 2 for r in range(len(names))])
  ax.set_yticklabels(names, fontsize=7)
  ax.tick_params(left=False)
  for spine in ax.spines.values():
    spine.set_visible(False)
  fig.suptitle(title, fontsize=9)
  return save(fig, path, whole_labels=True)


def likeness_plot(
  panels: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
  *,
  control: float,
  null_median: float,
  title: str,
  path: str,
) -> str:
  """Fraction of filters above the null's 95th percentile, start and end, per arm (95% CI).

  ``panels``: title (a training size) -> arm -> ``{"initial": [...], "final": [...]}``
  over seeds. One panel per size, side by side with the arms as rows in one order, so
  the arm names read horizontally and a figure of 11 arms and 4 sizes stays page-sized.
  """
  arms = sorted({arm for by_arm in panels.values() for arm in by_arm})
  y = {arm: i for i, arm in enumerate(reversed(arms))}
  count = max(1, len(panels))
  fig, axes = plt.subplots(
    1, count, figsize=(2.9 * count + 2.2, 0.3 * len(arms) + 2.0), sharey=True, squeeze=False
  )
  for ax, (name, by_arm) in zip(axes[0], panels.items(), strict=False):
    for offset, when, marker in ((0.15, "initial", "o"), (-0.15, "final", "s")):
      names = [arm for arm in arms if arm in by_arm]
      summaries = [stats.t_interval(by_arm[arm][when]) for arm in names]
      means = np.array([s.mean for s in summaries])
      low = np.array([s.mean - (s.ci_low if s.n > 1 else s.mean) for s in summaries])
      high = np.array([(s.ci_high if s.n > 1 else s.mean) - s.mean for s in summaries])
      ax.errorbar(
        means,
        [y[arm] + offset for arm in names],
        xerr=[low, high],
        fmt=marker,
        markersize=4,
        capsize=2,
        color="tab:blue" if when == "initial" else "tab:orange",
        label=f"{'start' if when == 'initial' else 'end'} of training",
      )
    ax.axvline(
      control,
      color="green",
      linestyle="--",
      linewidth=1,
      label=f"positive control: fixed Gabor bank ({control:.2f})",
    )
    ax.axvline(
      0.05,
      color="grey",
      linestyle=":",
      linewidth=1,
      label="null: 5% of surrogates exceed their own 95th percentile",
    )
    ax.set_xlim(-0.03, 1.03)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("fraction above the null's p95", fontsize=8)
    ax.grid(alpha=0.3)
  for ax in axes[0][len(panels) :]:
    ax.axis("off")
  axes[0][0].set_yticks(list(y.values()), list(y.keys()), fontsize=8)
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.suptitle(f"{title} (null R² median {null_median:.2f})", fontsize=10)
  fig.tight_layout(rect=(0, 0.1, 1, 1))
  fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
  return save(fig, path, whole_labels=True)


def _frequency_bands(axis, frequency, edges, image_energy) -> None:
  """Share of filters per frequency band (start, end per size) beside the images' energy share."""
  edges = np.asarray(edges, float)
  positions = np.arange(len(edges) - 1)

  def shares(values):
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), edges)
    return counts / max(1, counts.sum())

  first = next(iter(frequency.values()))[0]
  axis.plot(positions, shares(first), "o:", color="grey", label="filters at the start")
  for size, (_, after) in frequency.items():
    axis.plot(positions, shares(after), "o-", label=f"filters at the end, {size}")
  axis.plot(positions, image_energy, "k--", linewidth=2, label="training images: energy share")
  axis.set_xticks(positions, [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)])
  axis.set_xlabel("frequency band (cycles/pixel)")
  axis.set_ylabel("share of filters (or of image energy)")
  axis.grid(alpha=0.3)
  axis.legend(fontsize=7)


def gabor_parameters(
  theta: Mapping[str, tuple[np.ndarray, np.ndarray]],
  frequency: Mapping[str, tuple[np.ndarray, np.ndarray]],
  image_orientation_energy: Sequence[float] | None,
  *,
  path: str,
  bins: int = 8,
  image_frequency: tuple[Sequence[float], Sequence[float]] | None = None,
) -> str:
  """Orientation shares at the start and end per arm (with the images'), and frequency moves.

  With ``image_frequency`` (band edges in cycles/pixel, the images' energy share per
  band) a third panel sets the filters' frequency shares per band, at the start and
  the end for each training size, beside the images' spectrum.
  """
  panels = 3 if image_frequency is not None else 2
  fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2))
  left, right = axes[0], axes[1]
  width = np.pi / bins
  centres = np.arange(bins) * width
  edges = np.concatenate([centres - width / 2, [np.pi - width / 2]])

  def shares(values):
    wrapped = np.mod(values + width / 2, np.pi) - width / 2
    counts, _ = np.histogram(wrapped, edges)
    return counts / max(1, counts.sum())

  first = next(iter(theta.values()))[0]
  left.plot(np.degrees(centres), shares(first), "o:", color="grey", label="start (all arms)")
  for name, (_, after) in theta.items():
    left.plot(np.degrees(centres), shares(after), "o-", label=f"end: {name}")
  if image_orientation_energy is not None:
    left.plot(
      np.degrees(centres),
      image_orientation_energy,
      "k--",
      linewidth=2,
      label="training images: energy share",
    )
  left.set_xlabel("orientation theta (degrees, bin centres; theta mod 180)")
  left.set_ylabel("share of filters (or of image energy)")
  # From zero: a flat histogram must look flat, not fill the plot with its noise.
  left.set_ylim(0, max(0.3, left.get_ylim()[1]))
  left.grid(alpha=0.3)
  left.legend(fontsize=7)
  for size, (before, after) in frequency.items():
    right.scatter(before, after, s=8, alpha=0.5, label=size)
  low, high = 0.015, 0.5
  right.plot([low, high], [low, high], color="grey", linestyle=":", linewidth=0.8)
  right.set_xscale("log")
  right.set_yscale("log")
  for axis in (right.xaxis, right.yaxis):  # plain decimals, no crowded minor labels
    axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  right.set_xlabel("initial frequency (cycles/pixel)")
  right.set_ylabel("final frequency (cycles/pixel)")
  right.grid(alpha=0.3)
  right.legend(fontsize=7)
  if image_frequency is not None:
    _frequency_bands(axes[2], frequency, *image_frequency)
  fig.suptitle("Learnable Gabor parameters: where they went")
  return save(fig, path)
