"""One small logger interface for scalars, images, histograms, tables and artifacts.

The training loop talks to a :class:`Logger` and never to a tracking service
directly, so the same run writes JSON lines and PNGs into its workdir, sends
the same events to Weights & Biases, or records them in memory for a test.
Backends: :class:`hybridconv.tracking.jsonl_logger.JsonlLogger`,
:class:`hybridconv.tracking.wandb_logger.WandbLogger`, :class:`MemoryLogger`,
:class:`NullLogger` (processes other than 0) and :class:`MultiLogger` (fan-out);
:func:`make_logger` builds the right one from ``config.tracking``.

A logger must never stop a training run: backends that talk to the outside
world (W&B) run behind :class:`hybridconv.tracking.writers.BackgroundWriter`,
which keeps their stalls off the training thread and turns their failures into
one warning.

Values are converted to host NumPy copies by :func:`to_host` before they are
kept anywhere, because the train step donates its device buffers: an array
still aliasing a donated buffer would later read garbage.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

# Bins used when a histogram is given as raw values.
DEFAULT_BINS = 32


class Histogram(NamedTuple):
  """A pre-binned histogram: ``counts[i]`` values fell in ``[edges[i], edges[i+1])``.

  Used for distributions that are not samples, e.g. a filter bank's spectral
  energy per orientation bin (``counts`` may then be fractional weights).
  """

  counts: np.ndarray
  edges: np.ndarray


def to_host(value: Any) -> np.ndarray:
  """A host NumPy copy of an array (never a view of a device buffer)."""
  return np.array(value, copy=True)


def histogram(values: Any, bins: int = DEFAULT_BINS) -> Histogram:
  """Bins finite ``values``; an empty or all-non-finite input gives zero counts on [0, 1]."""
  if isinstance(values, Histogram):
    return Histogram(to_host(values.counts), to_host(values.edges))
  flat = to_host(values).astype(np.float64).ravel()
  flat = flat[np.isfinite(flat)]
  if flat.size == 0:
    return Histogram(np.zeros(bins), np.linspace(0.0, 1.0, bins + 1))
  counts, edges = np.histogram(flat, bins=bins)
  return Histogram(counts, edges)


def histogram_summary(values: Any, bins: int = DEFAULT_BINS) -> dict[str, Any]:
  """Summary statistics and bin counts of a histogram, as JSON-ready Python values."""
  if isinstance(values, Histogram):
    hist = histogram(values)
    centres = 0.5 * (hist.edges[:-1] + hist.edges[1:])
    weights = hist.counts.astype(np.float64)
    total = float(weights.sum())
    mean = float((weights * centres).sum() / total) if total > 0 else math.nan
    std = float(np.sqrt((weights * (centres - mean) ** 2).sum() / total)) if total > 0 else math.nan
    lo, hi = float(hist.edges[0]), float(hist.edges[-1])
    count = total
  else:
    flat = to_host(values).astype(np.float64).ravel()
    finite = flat[np.isfinite(flat)]
    hist = histogram(finite, bins)
    count = int(flat.size)
    mean = float(finite.mean()) if finite.size else math.nan
    std = float(finite.std()) if finite.size else math.nan
    lo = float(finite.min()) if finite.size else math.nan
    hi = float(finite.max()) if finite.size else math.nan
  return {
    "count": count,
    "mean": mean,
    "std": std,
    "min": lo,
    "max": hi,
    "bin_edges": [float(e) for e in hist.edges],
    "bin_counts": [float(c) for c in hist.counts],
  }


def check_image(name: str, image: Any) -> np.ndarray:
  """Returns ``image`` as a host uint8 ``(H, W, C)`` array with C in {1, 3, 4}.

  Raises:
    ValueError: for any other dtype or shape (wandb 0.31 no longer rescales
      floats, so images must arrive as uint8 already).
  """
  array = to_host(image)
  if array.dtype != np.uint8:
    raise ValueError(f"image {name!r} must be uint8 (convert floats yourself), got {array.dtype}")
  if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
    raise ValueError(
      f"image {name!r} must have shape (H, W, C) with C in 1, 3, 4, got {array.shape}"
    )
  return array


def check_table(
  name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> tuple[list[str], list[list[Any]]]:
  """Validates a table's shape and returns it as plain lists."""
  columns = [str(c) for c in columns]
  rows = [list(r) for r in rows]
  bad = [i for i, r in enumerate(rows) if len(r) != len(columns)]
  if bad:
    raise ValueError(
      f"table {name!r}: row {bad[0]} has {len(rows[bad[0]])} values but there are "
      f"{len(columns)} columns {columns}"
    )
  return columns, rows


class Logger(abc.ABC):
  """Where a run's events go. ``step`` is the number of updates applied so far.

  ``write_scalars`` is an alias of :meth:`log_scalars`, so any logger is also a
  ``hybridconv.tracking.writers.MetricWriter`` for the train loop.
  """

  @abc.abstractmethod
  def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """Scalars such as ``train/loss``; the frequent cadence."""

  @abc.abstractmethod
  def log_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """uint8 ``(H, W, C)`` images keyed by name, e.g. ``filters/conv1``."""

  @abc.abstractmethod
  def log_histograms(self, step: int, histograms: Mapping[str, np.ndarray | Histogram]) -> None:
    """Raw values (binned by the backend) or pre-binned :class:`Histogram` s."""

  @abc.abstractmethod
  def log_table(
    self, step: int, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
  ) -> None:
    """A table of plain values (numbers and strings), one row per item."""

  @abc.abstractmethod
  def log_artifact(self, path_or_ref: str, name: str, type: str) -> None:
    """A file, directory or URI reference (``file://``, ``gs://``, ``s3://``) as an artifact."""

  @abc.abstractmethod
  def log_config(self, config: Mapping[str, Any]) -> None:
    """The run's configuration as a nested dict of plain values."""

  @abc.abstractmethod
  def close(self) -> None:
    """Flushes and releases resources; further calls are ignored."""

  def log_video(self, step: int, name: str, path: str) -> None:
    """A video or animated GIF file (``filters_gif/conv1``); backends without video skip it.

    Not abstract: the workdir backend already holds the file, and the
    fan-out, memory and W&B backends override it.
    """
    del step, name, path

  def log_results_table(
    self,
    name: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    scalars: Mapping[str, float] | None = None,
    line_plot: tuple[str, str, str, str] | None = None,
  ) -> None:
    """A table of results computed after training (robustness), with summary scalars.

    Not abstract: only W&B shows it (the workdir has ``robustness.json``);
    ``line_plot = (key, x column, y column, title)`` asks for a plot of the table.
    """
    del name, columns, rows, scalars, line_plot

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    self.log_scalars(step, scalars)

  def __enter__(self) -> Logger:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class NullLogger(Logger):
  """Discards everything: the logger of every process but process 0."""

  def log_scalars(self, step, scalars):
    del step, scalars

  def log_images(self, step, images):
    del step, images

  def log_histograms(self, step, histograms):
    del step, histograms

  def log_table(self, step, name, columns, rows):
    del step, name, columns, rows

  def log_artifact(self, path_or_ref, name, type):
    del path_or_ref, name, type

  def log_config(self, config):
    del config

  def close(self):
    pass


@dataclasses.dataclass
class Event:
  """One recorded call of a :class:`MemoryLogger`."""

  kind: str  # 'scalars', 'images', 'histograms', 'table', 'artifact', 'config' or 'video'
  step: int | None
  data: Any


class MemoryLogger(Logger):
  """Records every call in :attr:`events` (host copies), for tests and notebooks."""

  def __init__(self):
    self.events: list[Event] = []
    self.closed = False

  def log_scalars(self, step, scalars):
    self.events.append(Event("scalars", int(step), {k: float(v) for k, v in scalars.items()}))

  def log_images(self, step, images):
    images = {k: check_image(k, v) for k, v in images.items()}
    self.events.append(Event("images", int(step), images))

  def log_histograms(self, step, histograms):
    self.events.append(
      Event("histograms", int(step), {k: histogram(v) for k, v in histograms.items()})
    )

  def log_table(self, step, name, columns, rows):
    columns, rows = check_table(name, columns, rows)
    self.events.append(Event("table", int(step), {"name": name, "columns": columns, "rows": rows}))

  def log_artifact(self, path_or_ref, name, type):
    record = {"path": str(path_or_ref), "name": name, "type": type}
    self.events.append(Event("artifact", None, record))

  def log_config(self, config):
    self.events.append(Event("config", None, dict(config)))

  def log_video(self, step, name, path):
    self.events.append(Event("video", int(step), {name: str(path)}))

  def close(self):
    self.closed = True

  def keys(self, kind: str, step: int | None = None) -> set[str]:
    """Names logged with ``kind`` (at ``step`` if given); table names for 'table'."""
    names = set()
    for event in self.events:
      if event.kind == kind and (step is None or event.step == step):
        names.update([event.data["name"]] if kind == "table" else event.data)
    return names

  def steps(self, kind: str, key: str) -> list[int]:
    """Steps at which ``key`` was logged with ``kind``, in call order."""
    return [
      e.step
      for e in self.events
      if e.kind == kind and (e.data.get("name") == key if kind == "table" else key in e.data)
    ]


class MultiLogger(Logger):
  """Sends every event to several loggers, in order."""

  def __init__(self, loggers: Sequence[Logger]):
    self.loggers = list(loggers)

  def log_scalars(self, step, scalars):
    for logger in self.loggers:
      logger.log_scalars(step, scalars)

  def log_images(self, step, images):
    images = {k: check_image(k, v) for k, v in images.items()}
    for logger in self.loggers:
      logger.log_images(step, images)

  def log_histograms(self, step, histograms):
    for logger in self.loggers:
      logger.log_histograms(step, histograms)

  def log_table(self, step, name, columns, rows):
    for logger in self.loggers:
      logger.log_table(step, name, columns, rows)

  def log_artifact(self, path_or_ref, name, type):
    for logger in self.loggers:
      logger.log_artifact(path_or_ref, name, type)

  def log_config(self, config):
    for logger in self.loggers:
      logger.log_config(config)

  def log_video(self, step, name, path):
    for logger in self.loggers:
      logger.log_video(step, name, path)

  def log_results_table(self, name, columns, rows, *, scalars=None, line_plot=None):
    for logger in self.loggers:
      logger.log_results_table(name, columns, rows, scalars=scalars, line_plot=line_plot)

  def close(self):
    for logger in self.loggers:
      logger.close()
