"""The workdir backend: JSON lines and PNG files that need no service to read.

Layout inside the workdir (every JSONL line is one event with its ``step``)::

  metrics.jsonl       {"step": 100, "train/loss": 0.41, ...}  (NaN/inf as strings)
  histograms.jsonl    {"step": 100, "name": "gabor/conv1/theta", "count": .., "mean": ..,
                       "std": .., "min": .., "max": .., "bin_edges": [..], "bin_counts": [..]}
  tables.jsonl        {"step": 100, "name": "gabor_fit/conv1", "columns": [..], "rows": [[..]]}
  artifacts.jsonl     {"name": .., "type": .., "path": ..}
  config.json         the logged config
  <image key>/step_0000100.png   e.g. filters/conv1/step_0000100.png

``metrics.jsonl`` has one JSON object per event (``step`` plus scalars); the
analysis tools read either. Files are opened in append mode, so a resumed run
continues the same history (events after the last checkpoint may appear
twice; readers keep the later one). Every event is flushed, so a killed run
loses nothing and a live run can be watched with ``tail -f``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging
from PIL import Image

from hybridconv.run_layout import (
  ARTIFACTS_FILE,
  CONFIG_FILE,
  HISTOGRAMS_FILE,
  METRICS_FILE,
  TABLES_FILE,
)
from hybridconv.tracking import logger as logger_lib

IMAGE_PATTERN = "step_{step:07d}.png"


def json_value(value: Any) -> Any:
  """Plain JSON for a logged value: NaN and infinities become strings."""
  if isinstance(value, (bool, str)) or value is None:
    return value
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)) or (isinstance(value, np.ndarray) and value.ndim == 0):
    value = float(value)
    return value if math.isfinite(value) else str(value)
  if isinstance(value, Mapping):
    return {str(k): json_value(v) for k, v in value.items()}
  if isinstance(value, (list, tuple, np.ndarray)):
    return [json_value(v) for v in value]
  return str(value)


def image_path(workdir: str, key: str, step: int) -> str:
  """Where the PNG of image ``key`` at ``step`` goes; key components become folders."""
  parts = [p for p in key.split("/") if p not in ("", ".", "..")]
  if not parts:
    raise ValueError(f"image key {key!r} names no file")
  return os.path.join(workdir, *parts, IMAGE_PATTERN.format(step=int(step)))


def read_jsonl(path: str) -> list[dict[str, Any]]:
  """The events of a JSONL file; a truncated last line (a killed run) is skipped."""
  events = []
  if not os.path.exists(path):
    return events
  with open(path, encoding="utf-8") as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        events.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return events


def drop_partial_last_line(path: str) -> None:
  """Cuts a last line without its newline (a writer killed mid-record) off a JSONL file.

  A resumed run appends to the file; without the cut its first record would be
  glued onto the partial one and both would be lost to every reader.
  """
  if not os.path.exists(path):
    return
  with open(path, "rb+") as f:
    size = f.seek(0, os.SEEK_END)
    if size == 0:
      return
    f.seek(size - 1)
    if f.read(1) == b"\n":
      return
    # Read back in blocks to the previous newline (records are small; files may be large).
    end, block = size, 1 << 16
    while end > 0:
      start = max(0, end - block)
      f.seek(start)
      newline = f.read(end - start).rfind(b"\n")
      if newline >= 0:
        cut = start + newline + 1
        break
      end = start
    else:
      cut = 0
    f.truncate(cut)
  logging.warning(
    "%s ended in a partial line (%d bytes, a killed writer); removed it", path, size - cut
  )


class JsonlLogger(logger_lib.Logger):
  """Writes the workdir layout above.

  Args:
    workdir: run directory (created if missing).
  """

  def __init__(self, workdir: str):
    self.workdir = os.path.abspath(workdir)
    os.makedirs(self.workdir, exist_ok=True)
    self._files: dict[str, Any] = {}
    self._closed = False

  def _append(self, filename: str, record: dict[str, Any]) -> None:
    if self._closed:
      return
    if filename not in self._files:
      path = os.path.join(self.workdir, filename)
      drop_partial_last_line(path)
      self._files[filename] = open(path, "a", encoding="utf-8")
    f = self._files[filename]
    f.write(json.dumps(json_value(record)) + "\n")
    f.flush()

  def log_scalars(self, step, scalars):
    self._append(METRICS_FILE, {"step": int(step), **{k: float(v) for k, v in scalars.items()}})

  def log_images(self, step, images):
    if self._closed:
      return
    for key, image in images.items():
      array = logger_lib.check_image(key, image)
      path = image_path(self.workdir, key, step)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)

  def log_histograms(self, step, histograms):
    for name, values in histograms.items():
      self._append(
        HISTOGRAMS_FILE, {"step": int(step), "name": name, **logger_lib.histogram_summary(values)}
      )

  def log_table(self, step, name, columns, rows):
    columns, rows = logger_lib.check_table(name, columns, rows)
    self._append(TABLES_FILE, {"step": int(step), "name": name, "columns": columns, "rows": rows})

  def log_artifact(self, path_or_ref, name, type):
    self._append(ARTIFACTS_FILE, {"name": name, "type": type, "path": str(path_or_ref)})

  def log_config(self, config: Mapping[str, Any]) -> None:
    if self._closed:
      return
    with open(os.path.join(self.workdir, CONFIG_FILE), "w", encoding="utf-8") as f:
      json.dump(json_value(dict(config)), f, indent=2, sort_keys=True)

  def close(self):
    self._closed = True
    for f in self._files.values():
      f.close()
    self._files.clear()


def read_events(workdir: str) -> list[dict[str, Any]]:
  """Every event of ``<workdir>/metrics.jsonl`` as written, in order (strict: a bad line raises).

  :func:`read_metrics` gives the same file as per-key histories.
  """
  with open(os.path.join(workdir, METRICS_FILE), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def read_tables(workdir: str, name: str | None = None) -> list[dict[str, Any]]:
  """Table events of a workdir (all, or those named ``name``), in logged order."""
  events = read_jsonl(os.path.join(workdir, TABLES_FILE))
  return [e for e in events if name is None or e.get("name") == name]


def read_histograms(workdir: str) -> list[dict[str, Any]]:
  """Histogram events of a workdir, in logged order."""
  return read_jsonl(os.path.join(workdir, HISTOGRAMS_FILE))


def read_metrics(workdir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Scalar histories ``{key: (steps, values)}`` from ``metrics.jsonl``.

  A step logged twice (a resumed run re-doing steps after its last checkpoint)
  keeps the later value; strings such as ``"nan"`` become floats.
  """
  series: dict[str, dict[int, float]] = {}
  for event in read_jsonl(os.path.join(workdir, METRICS_FILE)):
    step = event.get("step")
    if step is None:
      continue
    for key, value in event.items():
      if key == "step":
        continue
      try:
        series.setdefault(key, {})[int(step)] = float(value)
      except (TypeError, ValueError):
        continue
  return {
    key: (np.array(sorted(values)), np.array([values[s] for s in sorted(values)]))
    for key, values in series.items()
  }
