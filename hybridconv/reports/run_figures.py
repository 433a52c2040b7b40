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

# Axis labels of the Gabor parameters, with their units (constrained values as
# logged by hybridconv.tracking.filters).
PARAMETER_LABELS = {
  "theta": "theta (rad, mod pi)",
  "frequency": "frequency (cycles/pixel)",
  "sigma": "sigma (pixels)",
  "gamma": "gamma (aspect ratio)",
  "psi": "psi (rad)",
}
ANGLES = ("theta", "psi")  # drift in radians; the others' drift is relative


def _save(fig: Figure, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  return path


def training_curves(metrics: Mapping[str, Series], path: str) -> str | None:
  """Loss and accuracy (train and eval) against step; None if neither was logged."""
  panels = [
    ("loss", ["train/loss", "eval/loss"]),
    ("accuracy", ["train/accuracy", "eval/accuracy"]),
  ]
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
    ax.set_ylabel("cross-entropy (nats)" if title == "loss" else "accuracy (fraction)")
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
    ax.imshow(
      image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest"
    )
    ax.set_title(f"{title}: step {step}")
    ax.axis("off")
  return _save(fig, path)


def _bar_histogram(ax, event: Mapping, label: str, alpha: float, colour: str) -> None:
  edges = np.asarray(event["bin_edges"], float)
  counts = np.asarray(event["bin_counts"], float)
  if "min" in event and float(event["min"]) == float(event["max"]):
    # All filters share one value (e.g. a grid initialisation): a bar at that
    # value, not a bin of NumPy's arbitrary unit width around it.
    ax.vlines([float(event["min"])], 0, counts.sum(), lw=4, alpha=alpha, label=label, color=colour)
    return
  ax.stairs(counts, edges, fill=True, alpha=alpha, label=label, color=colour)


def _data_limits(ax, events: Sequence[Mapping]) -> None:
  """x limits around the values themselves, so narrow histograms stay visible."""
  low = min(float(e["min"]) for e in events)
  high = max(float(e["max"]) for e in events)
  pad = max(0.05 * (high - low), 0.02 * max(abs(low), abs(high)), 1e-3)
  ax.set_xlim(low - pad, high + pad)


def parameter_histograms(
  first: Mapping[str, Mapping],
  last: Mapping[str, Mapping],
  title: str,
  path: str,
  fixed: Mapping[str, Mapping] | None = None,
) -> str:
  """One panel per parameter: learned ones as histograms at the first and last summary.

  ``fixed`` parameters (not learned) are drawn as what they are -- the
  constant values the filters were built with, as grey ticks on their axis --
  not as a distribution that could have moved.
  """
  fixed = dict(fixed or {})
  names = list(last) + list(fixed)
  fig = Figure(figsize=(3.2 * len(names), 3.0))
  for i, name in enumerate(names):
    ax = fig.add_subplot(1, len(names), i + 1)
    ax.set_xlabel(PARAMETER_LABELS.get(name, name))
    if name in fixed:
      event = fixed[name]
      low, high = float(event["min"]), float(event["max"])
      if high > low:  # several values: the occupied bins, at their centres
        edges = np.asarray(event["bin_edges"], float)
        values = 0.5 * (edges[:-1] + edges[1:])[np.asarray(event["bin_counts"], float) > 0]
        note = f"fixed: {low:.4g} to {high:.4g}"
      else:  # one value shared by all filters: exactly that value
        values, note = np.array([low]), f"fixed at {low:.4g}"
      ax.vlines(values, 0, 1, color="grey")
      ax.set_ylim(0, 1.6)
      ax.set_yticks([])
      ax.set_ylabel("value (fixed)")
      ax.text(
        0.5,
        0.92,
        f"not learned\n{note}",
        transform=ax.transAxes,
        ha="center",
        va="top",
        fontsize=8,
        color="dimgrey",
      )
      ax.set_title(f"{title} {name} (fixed)")
      continue
    shown = [first[name]] if name in first else []
    styles = ((0.4, "C0"), (0.6, "C1"))[-len(shown) - 1 :]  # first summary, last summary
    for event, (alpha, colour) in zip(shown + [last[name]], styles, strict=True):
      _bar_histogram(ax, event, f"step {event['step']}", alpha, colour)
    if all("min" in e for e in shown + [last[name]]):
      _data_limits(ax, shown + [last[name]])
    ax.set_ylabel("filters")
    ax.set_title(f"{title} {name}")
    ax.legend(fontsize=7)
  return _save(fig, path)


def drift(series: Mapping[str, Series], title: str, path: str) -> str:
  """Drift of Gabor parameters: angles in radians and the rest relative, on separate axes.

  theta's drift (wrapped modulo pi) and psi's are angles; frequency, sigma and
  gamma drift as ``|p / p0 - 1|``. One axis for both would compare radians
  with fractions.
  """
  panels = [
    (names, label)
    for names, label in (
      ([n for n in series if n in ANGLES], "mean |change| (rad, wrapped)"),
      ([n for n in series if n not in ANGLES], "mean |p / p0 - 1| (relative)"),
    )
    if names
  ]
  fig = Figure(figsize=(5 * len(panels), 3.5))
  for i, (names, ylabel) in enumerate(panels):
    ax = fig.add_subplot(1, len(panels), i + 1)
    for name in names:
      steps, values = series[name]
      ax.plot(steps, values, marker="o", ms=3, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}: {'angles' if names[0] in ANGLES else 'scales'}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
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
  """R^2 median with its interquartile band, per layer, against step, over its null band.

  The null band (hatched grey, dashed median) is the same fitter's R^2 for
  phase-randomised copies of the layer's filters at each summary
  (:mod:`hybridconv.analysis.gabor_null`): a layer is Gabor-like as far as
  its band sits above that one.
  """
  fig = Figure(figsize=(6.5, 3.8))
  ax = fig.add_subplot(1, 1, 1)
  for layer, stats in layers.items():
    steps, median = stats["r2_median"]
    (line,) = ax.plot(steps, median, marker="o", ms=3, label=f"{layer} median")
    if "r2_q25" in stats and "r2_q75" in stats:
      ax.fill_between(
        stats["r2_q25"][0],
        stats["r2_q25"][1],
        stats["r2_q75"][1],
        color=line.get_color(),
        alpha=0.2,
        label=f"{layer} 25-75%",
      )
    if "null_r2_median" in stats:
      null_steps, null_median = stats["null_r2_median"]
      ax.plot(
        null_steps,
        null_median,
        ls="--",
        color=line.get_color(),
        alpha=0.8,
        label=f"{layer} null median",
      )
      if "null_r2_q25" in stats and "null_r2_q75" in stats:
        ax.fill_between(
          stats["null_r2_q25"][0],
          stats["null_r2_q25"][1],
          stats["null_r2_q75"][1],
          facecolor="none",
          edgecolor="grey",
          hatch="///",
          lw=0,
          label=f"{layer} null 25-75%",
        )
  ax.set_ylim(0, 1)
  ax.set_xlabel("step")
  ax.set_ylabel("Gabor fit R^2")
  ax.set_title("Gabor-likeness of free kernels")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return _save(fig, path)
