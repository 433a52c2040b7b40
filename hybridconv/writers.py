"""Where scalar metrics go: the workdir's ``metrics.jsonl``, and any other writer.

The train loop talks to one small interface, ``write_scalars(step, scalars)``,
so experiment trackers (``hybridconv.tracking``) plug in beside the JSON lines
file without the loop knowing about them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Protocol

METRICS_FILE = "metrics.jsonl"


class MetricWriter(Protocol):
  """Receives scalar metrics; ``step`` is the number of updates applied so far."""

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None: ...

  def close(self) -> None: ...


def _json_number(value: float) -> float | str:
  """Floats as JSON numbers; NaN and infinities as strings (JSON has no literal for them)."""
  value = float(value)
  return value if math.isfinite(value) else str(value)


class JsonlWriter:
  """Appends one JSON object per event to ``<workdir>/metrics.jsonl``.

  Each line is ``{"step": int, "<name>": float, ...}``. The file is opened in
  append mode so a resumed run continues the same history (events after the
  last checkpoint may then appear twice; the later one is the resumed run's).
  Each event is flushed so an external reader or a killed run loses nothing.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, METRICS_FILE)
    self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    record = {"step": int(step)}
    record.update({key: _json_number(value) for key, value in scalars.items()})
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()

  def close(self) -> None:
    if not self._file.closed:
      self._file.close()


class MultiWriter:
  """Sends every event to several writers, in order."""

  def __init__(self, writers: Sequence[MetricWriter]):
    self.writers = list(writers)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    for writer in self.writers:
      writer.write_scalars(step, scalars)

  def close(self) -> None:
    for writer in self.writers:
      writer.close()


class NullWriter:
  """Writes nothing: used on processes other than 0 in multi-host runs."""

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    del step, scalars

  def close(self) -> None:
    pass


def read_metrics(workdir: str) -> list[dict]:
  """All events of ``<workdir>/metrics.jsonl``, in order."""
  with open(os.path.join(workdir, METRICS_FILE), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]
