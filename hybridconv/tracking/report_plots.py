"""Figures of a run report, drawn with matplotlib's object API (no pyplot state).

Each function takes plain arrays read from a workdir, writes one PNG and
returns its path. ``matplotlib.figure.Figure`` renders with the Agg canvas on
``savefig``, so nothing here selects a global backend or needs a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

Series = tuple[np.ndarray, np.ndarray]  # (steps, values)


def _save(fig: Figure, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  return path


def training_curves(metrics: Mapping[str, Series], path: str) -> str | None:
  """Loss and accuracy (train and eval) against step; None if neither was logged."""
  panels = [("loss", ["train/loss", "eval/loss"]),
            ("accuracy", ["train/accuracy", "eval/accuracy"])]
  panels = [(title, [k for k in keys if k in metrics]) for title, keys in panels]
  panels = [(title, keys) for title, keys in panels if keys]
  if not panels:
    return None
  fig = Figure(figsize=(5 * len(panels), 3.5))
  for i, (title, keys) in enumerate(panels):
    ax = fig.add_subplot(1, len(panels), i + 1)
    for key in keys:
      steps, values = metrics[key]
      ax.plot(steps, values, marker="o" if key.startswith("eval") else None, ms=3, label=key)
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
  return _save(fig, path)


def first_and_last(frames: Sequence[tuple[int, str]], title: str, path: str) -> str:
  """The first and last filter grid of a layer side by side, pixels unsmoothed."""
  picks = [frames[0], frames[-1]] if len(frames) > 1 else [frames[0]]
  fig = Figure(figsize=(5 * len(picks), 5.4))
  for i, (step, frame) in enumerate(picks):
    ax = fig.add_subplot(1, len(picks), i + 1)
    image = np.asarray(Image.open(frame))
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_title(f"{title}: step {step}")
    ax.axis("off")
  return _save(fig, path)


def _bar_histogram(ax, event: Mapping, label: str, alpha: float) -> None:
  edges = np.asarray(event["bin_edges"], float)
  counts = np.asarray(event["bin_counts"], float)
  ax.stairs(counts, edges, fill=True, alpha=alpha, label=label)


def parameter_histograms(first: Mapping[str, Mapping], last: Mapping[str, Mapping],
                         title: str, path: str) -> str:
  """One panel per parameter: its histogram at the first and the last summary."""
  names = list(last)
  fig = Figure(figsize=(3.2 * len(names), 3.0))
  for i, name in enumerate(names):
    ax = fig.add_subplot(1, len(names), i + 1)
    if name in first:
      _bar_histogram(ax, first[name], f"step {first[name]['step']}", 0.4)
    _bar_histogram(ax, last[name], f"step {last[name]['step']}", 0.6)
    ax.set_title(f"{title} {name}")
    ax.legend(fontsize=7)
  return _save(fig, path)


def lines(series: Mapping[str, Series], title: str, ylabel: str, path: str) -> str:
  """Several scalar histories in one panel."""
  fig = Figure(figsize=(6, 3.5))
  ax = fig.add_subplot(1, 1, 1)
  for label, (steps, values) in series.items():
    ax.plot(steps, values, marker="o", ms=3, label=label)
  ax.set_xlabel("step")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return _save(fig, path)


def gabor_likeness(layers: Mapping[str, Mapping[str, Series]], path: str) -> str:
  """R^2 median with its interquartile band, per layer, against step."""
  fig = Figure(figsize=(6, 3.5))
  ax = fig.add_subplot(1, 1, 1)
  for layer, stats in layers.items():
    steps, median = stats["r2_median"]
    (line,) = ax.plot(steps, median, marker="o", ms=3, label=f"{layer} median")
    if "r2_q25" in stats and "r2_q75" in stats:
      ax.fill_between(stats["r2_q25"][0], stats["r2_q25"][1], stats["r2_q75"][1],
                      color=line.get_color(), alpha=0.2, label=f"{layer} 25-75%")
  ax.set_ylim(0, 1)
  ax.set_xlabel("step")
  ax.set_ylabel("Gabor fit R^2")
  ax.set_title("Gabor-likeness of free kernels")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return _save(fig, path)
