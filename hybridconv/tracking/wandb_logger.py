"""The Weights & Biases backend, built so that W&B can never stop a training run.

* ``wandb`` is imported lazily, inside the worker thread, so importing the
  library (or a run with W&B disabled) never pays for it.
* Every call from the training loop only copies its data to the host and puts
  it on a bounded queue (``put_nowait``); a background thread initialises the
  run and sends the events. A slow or dead W&B therefore costs the loop
  nothing, and when the queue is full events are dropped (with one warning)
  rather than blocking.
* Initialisation is bounded by ``init_timeout`` (``wandb.Settings``). If
  ``mode='online'`` fails -- no API key, no network, an unreachable server --
  the logger says so once and logs offline into ``<directory>/wandb`` instead
  (upload later with ``wandb sync``); if offline fails too it becomes a no-op.
* Every W&B call is wrapped: an exception is reported once per kind of call
  and swallowed. :meth:`WandbLogger.close` waits at most ``close_timeout``
  seconds for the queue to drain and ``run.finish()`` to return.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from absl import logging

from hybridconv.tracking import logger as logger_lib

MODES = ("online", "offline", "disabled")
_STOP = object()


def artifact_name(name: str) -> str:
  """A valid W&B artifact name (letters, digits, '-', '_', '.')."""
  cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
  if not cleaned:
    raise ValueError(f"artifact name {name!r} has no usable characters")
  return cleaned


class WandbLogger(logger_lib.Logger):
  """Logs to a W&B run from a background thread; see the module docstring.

  Args:
    project: W&B project name.
    entity: W&B entity (user or team); '' for the account's default.
    name: run display name; '' lets W&B choose.
    mode: 'online', 'offline' or 'disabled' ('disabled' never imports wandb).
    init_timeout: seconds ``wandb.init`` may wait for the server.
    directory: where W&B keeps the run's files (``<directory>/wandb``),
      normally the workdir.
    config: the run's config, sent with ``wandb.init``.
    queue_size: pending events kept before new ones are dropped.
    close_timeout: seconds :meth:`close` waits for the upload to finish.
    settings: extra ``wandb.Settings`` fields (e.g. ``{'console': 'off'}``).
    run_id: W&B run id; a run started again with the same id (a resumed
      training run) continues the same W&B run instead of starting a new one.
    group, tags, job_type: W&B's grouping fields ('' / () for none); a study
      groups its runs by sweep and tags them with their factor values.

  Attributes:
    mode: the mode the run actually uses once initialised ('online',
      'offline', or 'disabled' after a failure); see :meth:`wait_until_ready`.
  """

  def __init__(
    self,
    *,
    project: str,
    entity: str = "",
    name: str = "",
    mode: str = "online",
    init_timeout: float = 30.0,
    directory: str | None = None,
    config: Mapping[str, Any] | None = None,
    queue_size: int = 256,
    close_timeout: float = 60.0,
    settings: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    group: str = "",
    tags: tuple[str, ...] = (),
    job_type: str = "",
  ):
    if mode not in MODES:
      raise ValueError(f"tracking.wandb.mode={mode!r} is not one of {MODES}")
    if not init_timeout or init_timeout <= 0:
      raise ValueError(f"tracking.wandb.init_timeout must be > 0 seconds, got {init_timeout!r}")
    if not project:
      raise ValueError("tracking.wandb.project must name a W&B project, got ''")
    self.requested_mode = mode
    self.mode = mode
    self._init_args = dict(
      project=project,
      entity=entity or None,
      name=name or None,
      config=dict(config) if config else None,
      dir=os.path.abspath(directory) if directory else None,
      group=group or None,
      tags=list(tags) or None,
      job_type=job_type or None,
    )
    if run_id:
      self._init_args.update(id=run_id, resume="allow")
    self._init_timeout = float(init_timeout)
    self._close_timeout = float(close_timeout)
    self._settings = dict(settings or {})
    self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
    self._ready = threading.Event()
    self._warned: set[str] = set()
    self._closed = False
    self.run = None
    self.dropped = 0
    self._thread = None
    if directory:
      os.makedirs(directory, exist_ok=True)
    if mode == "disabled":
      self._ready.set()
      return
    self._thread = threading.Thread(target=self._work, name="wandb-logger", daemon=True)
    self._thread.start()

  # -- called from the training loop: copy, enqueue, return ------------------

  def _put(self, item: tuple) -> None:
    if self._closed or self.requested_mode == "disabled":
      return
    try:
      self._queue.put_nowait(item)
    except queue.Full:
      self.dropped += 1
      self._warn_once(
        "full",
        f"W&B logging is falling behind: dropping events (queue of "
        f"{self._queue.maxsize} full); the workdir files are complete",
      )

  def log_scalars(self, step, scalars):
    self._put(("log", int(step), {k: float(v) for k, v in scalars.items()}))

  def log_images(self, step, images):
    self._put(("images", int(step), {k: logger_lib.check_image(k, v) for k, v in images.items()}))

  def log_histograms(self, step, histograms):
    self._put(
      ("histograms", int(step), {k: logger_lib.histogram(v) for k, v in histograms.items()})
    )

  def log_table(self, step, name, columns, rows):
    columns, rows = logger_lib.check_table(name, columns, rows)
    self._put(("table", int(step), (name, columns, rows)))

  def log_results_table(self, name, columns, rows, *, scalars=None, line_plot=None):
    """A table of results computed after training (robustness), at W&B's current step.

    Logged without a step because W&B drops points below a resumed run's last
    step. ``scalars`` are logged with it; ``line_plot = (key, x column, y
    column, title)`` adds a ``wandb.plot.line`` of the table.
    """
    columns, rows = logger_lib.check_table(name, columns, rows)
    scalars = {k: float(v) for k, v in (scalars or {}).items()}
    self._put(("results", None, (name, columns, rows, scalars, line_plot)))

  def log_artifact(self, path_or_ref, name, type):
    self._put(("artifact", None, (str(path_or_ref), artifact_name(name), type)))

  def log_config(self, config):
    self._put(("config", None, dict(config)))

  def log_video(self, step, name, path):
    self._put(("video", int(step), (name, os.path.abspath(path))))

  def wait_until_ready(self, timeout: float | None = None) -> bool:
    """Blocks until initialisation has succeeded or given up (for tests and scripts)."""
    return self._ready.wait(timeout)

  def close(self) -> None:
    """Drains the queue and finishes the run, waiting at most ``close_timeout`` seconds."""
    if self._closed:
      return
    self._closed = True
    if self._thread is None:
      return
    deadline = time.monotonic() + self._close_timeout
    try:
      self._queue.put(_STOP, timeout=self._close_timeout)
    except queue.Full:
      pass
    self._thread.join(max(0.0, deadline - time.monotonic()))
    if self._thread.is_alive():
      where = self._init_args["dir"] or "the W&B directory"
      logging.warning(
        "W&B did not finish within %.0f s; the training run goes on without it. "
        "Local run files are in %s (upload them with `wandb sync`).",
        self._close_timeout,
        where,
      )

  # -- the worker thread ------------------------------------------------------

  def _warn_once(self, kind: str, message: str) -> None:
    if kind not in self._warned:
      self._warned.add(kind)
      logging.warning("%s", message)

  def _init_run(self, wandb, mode: str):
    settings = wandb.Settings(
      init_timeout=self._init_timeout, reinit="create_new", **self._settings
    )
    return wandb.init(mode=mode, settings=settings, **self._init_args)

  def _start(self) -> None:
    """Initialises the run: online, then offline, then nothing -- never raises."""
    try:
      import wandb
    except Exception as error:  # a broken install must not stop training
      self.mode = "disabled"
      self._warn_once("import", f"W&B logging disabled: cannot import wandb ({error})")
      return
    modes = ["online", "offline"] if self.requested_mode == "online" else ["offline"]
    for mode in modes:
      try:
        self.run = self._init_run(wandb, mode)
        self.mode = mode
        if mode != self.requested_mode:
          logging.warning(
            "W&B runs offline: its files are in %s; upload them later with `wandb sync %s`.",
            self.run.dir,
            os.path.dirname(self.run.dir),
          )
        return
      except Exception as error:  # no key, no network, bad server: all non-fatal
        text = str(error).strip()
        first_line = text.splitlines()[0] if text else type(error).__name__
        logging.warning(
          "W&B %s initialisation failed (%s: %s)%s",
          mode,
          type(error).__name__,
          first_line,
          "; trying offline" if mode == "online" else "",
        )
    self.mode = "disabled"
    logging.warning("W&B logging disabled for this run; the workdir files are complete.")

  def _send(self, wandb, kind: str, step: int | None, data: Any) -> None:
    run = self.run
    if kind == "log":
      run.log(data, step=step)
    elif kind == "images":
      run.log(
        {k: wandb.Image(v[..., 0] if v.shape[-1] == 1 else v) for k, v in data.items()}, step=step
      )
    elif kind == "histograms":
      run.log(
        {k: wandb.Histogram(np_histogram=(h.counts, h.edges)) for k, h in data.items()}, step=step
      )
    elif kind == "table":
      name, columns, rows = data
      run.log({name: wandb.Table(columns=columns, data=rows)}, step=step)
    elif kind == "results":
      name, columns, rows, scalars, line_plot = data
      table = wandb.Table(columns=columns, data=rows)
      logged = {name: table, **scalars}
      if line_plot is not None:
        key, x, y, title = line_plot
        logged[key] = wandb.plot.line(table, x, y, title=title)
      run.log(logged)
    elif kind == "artifact":
      path, name, artifact_type = data
      artifact = wandb.Artifact(name, type=artifact_type)
      if "://" in path:
        # By reference: nothing is uploaded and no file is read (checksum=False),
        # so a large checkpoint costs nothing.
        artifact.add_reference(path, checksum=False)
      elif os.path.isdir(path):
        artifact.add_dir(path)
      else:
        artifact.add_file(path)
      run.log_artifact(artifact)
    elif kind == "config":
      run.config.update(data, allow_val_change=True)
    elif kind == "video":
      name, path = data
      # A GIF path is copied as it is (no video encoder needed); W&B plays it.
      run.log({name: wandb.Video(path, format=os.path.splitext(path)[1][1:] or None)}, step=step)

  def _work(self) -> None:
    self._start()
    self._ready.set()
    wandb = None
    if self.run is not None:
      import wandb
    while True:
      item = self._queue.get()
      if item is _STOP:
        break
      if self.run is None:
        continue
      kind, step, data = item
      try:
        self._send(wandb, kind, step, data)
      except Exception as error:  # a W&B failure must not stop training
        self._warn_once(
          f"send-{kind}",
          f"W&B {kind} logging failed ({type(error).__name__}: "
          f"{error}); later {kind} failures are not reported",
        )
    if self.run is not None:
      try:
        self.run.finish()
      except Exception as error:
        self._warn_once("finish", f"W&B run.finish failed ({type(error).__name__}: {error})")
