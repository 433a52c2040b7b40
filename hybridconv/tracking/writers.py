"""Where metrics go besides the workdir, and the one background thread for slow loggers.

An extra writer of a run needs one small interface, ``write_scalars(step,
scalars)``, so experiment trackers plug in beside the JSON lines file without
the loop knowing about them. A tracker (W&B included) is a network service that
can fail or hang; :class:`BackgroundWriter` keeps it off the training thread, so
an outage costs at most a bounded wait at the end of the run and the workdir's
``metrics.jsonl`` still gets every event.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Mapping
from typing import Protocol

from absl import logging

from hybridconv.tracking import logger as logger_lib

# The longest a run's end waits for a background writer (e.g. W&B's upload) to finish.
CLOSE_TIMEOUT_S = 60.0


class MetricWriter(Protocol):
  """Receives scalar metrics; ``step`` is the number of updates applied so far."""

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None: ...

  def close(self) -> None: ...


class BackgroundWriter(logger_lib.Logger):
  """Runs a slow logger on a daemon thread, so its failures and stalls never reach training.

  The codebase's one background queue: W&B and any extra writer of a run sit
  behind it (:func:`hybridconv.tracking.make_logger`). A wrapped
  :class:`~hybridconv.tracking.logger.Logger` receives every kind of event; a
  plain :class:`MetricWriter` receives the scalars only.

  Every call copies its data to the host on the calling thread (the train step
  donates its device buffers, which the worker must not read later) and only
  enqueues: when the queue is full -- the writer hangs or is far behind --
  events are dropped and counted, with one warning. An exception from the
  writer is logged once with a warning and the following events are still
  offered to it (a tracker may recover). ``close`` waits at most
  ``close_timeout_s`` for the queue to drain and the writer to close, then
  gives up with a warning; the thread is a daemon, so a hung writer cannot keep
  the process alive.

  Args:
    writer: the writer to protect (e.g. a
      :class:`~hybridconv.tracking.wandb_logger.WandbLogger`).
    max_queue: events held at most while the writer is busy.
    close_timeout_s: the longest ``close`` waits (default :data:`CLOSE_TIMEOUT_S`).
  """

  def __init__(
    self, writer: MetricWriter, *, max_queue: int = 1000, close_timeout_s: float | None = None
  ):
    self.writer = writer
    self.close_timeout_s = CLOSE_TIMEOUT_S if close_timeout_s is None else close_timeout_s
    self.dropped = 0
    self.errors = 0
    self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
    self._closed = False
    self._full_logger = isinstance(writer, logger_lib.Logger)
    self._name = type(writer).__name__
    self._thread = threading.Thread(target=self._work, name=f"writer-{self._name}", daemon=True)
    self._thread.start()

  def _warn_once(self, what: str, error: BaseException) -> None:
    self.errors += 1
    if self.errors == 1:
      logging.warning(
        "background logger %s failed (%s: %s: %s); the run goes on and its workdir "
        "files are complete; further failures are counted, not logged",
        self._name,
        what,
        type(error).__name__,
        error,
      )

  def _work(self) -> None:
    while True:
      item = self._queue.get()
      if item is None:
        break
      method, args, kwargs = item
      try:
        getattr(self.writer, method)(*args, **kwargs)
      except Exception as error:  # noqa: BLE001 (any tracker failure is survivable)
        self._warn_once(method, error)
    try:
      self.writer.close()
    except Exception as error:  # noqa: BLE001
      self._warn_once("close", error)

  def _put(self, method: str, *args, **kwargs) -> None:
    """Enqueues ``writer.<method>(*args, **kwargs)``; args must already be host copies."""
    if self._closed:
      return
    try:
      self._queue.put_nowait((method, args, kwargs))
    except queue.Full:
      self.dropped += 1
      if self.dropped == 1:
        logging.warning(
          "background logger %s is not keeping up (queue of %d full); dropping its "
          "events, the workdir files still have them",
          self._name,
          self._queue.maxsize,
        )

  def log_scalars(self, step, scalars):
    self._put("write_scalars", int(step), {k: float(v) for k, v in scalars.items()})

  def log_images(self, step, images):
    if self._full_logger:
      images = {k: logger_lib.check_image(k, v) for k, v in images.items()}
      self._put("log_images", int(step), images)

  def log_histograms(self, step, histograms):
    if self._full_logger:
      histograms = {k: logger_lib.histogram(v) for k, v in histograms.items()}
      self._put("log_histograms", int(step), histograms)

  def log_table(self, step, name, columns, rows):
    if self._full_logger:
      self._put("log_table", int(step), name, *logger_lib.check_table(name, columns, rows))

  def log_results_table(self, name, columns, rows, *, scalars=None, line_plot=None):
    if self._full_logger:
      columns, rows = logger_lib.check_table(name, columns, rows)
      scalars = {k: float(v) for k, v in (scalars or {}).items()}
      self._put("log_results_table", name, columns, rows, scalars=scalars, line_plot=line_plot)

  def log_artifact(self, path_or_ref, name, type):
    if self._full_logger:
      self._put("log_artifact", str(path_or_ref), name, type)

  def log_config(self, config):
    if self._full_logger:
      self._put("log_config", dict(config))

  def log_video(self, step, name, path):
    if self._full_logger:
      self._put("log_video", int(step), name, os.path.abspath(path))

  def close(self) -> None:
    """Waits up to ``close_timeout_s`` for the writer to finish and close."""
    if self._closed:
      return
    self._closed = True
    deadline = time.monotonic() + self.close_timeout_s
    while True:  # the end marker must get in even if the queue is full of a hung writer's events
      try:
        self._queue.put(None, timeout=max(0.0, min(0.1, deadline - time.monotonic())))
        break
      except queue.Full:
        if time.monotonic() >= deadline:
          break
    self._thread.join(max(0.0, deadline - time.monotonic()))
    if self._thread.is_alive():
      logging.warning(
        "background logger %s did not finish within %.0f s; giving up on it (%d events "
        "not delivered, %d dropped); the workdir files have them all",
        self._name,
        self.close_timeout_s,
        self._queue.qsize(),
        self.dropped,
      )
    elif self.errors or self.dropped:
      logging.warning(
        "background logger %s: %d failed calls, %d dropped events",
        self._name,
        self.errors,
        self.dropped,
      )
