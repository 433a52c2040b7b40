"""The Weights & Biases backend: a plain synchronous logger, for behind a background thread.

* ``wandb`` is imported and the run initialised lazily, on the first event, so
  importing the library (or a run with W&B disabled) never pays for them.
* Initialisation is bounded by ``init_timeout`` (``wandb.Settings``). If
  ``mode='online'`` fails -- no API key, no network, an unreachable server --
  the logger says so once and logs offline into ``<directory>/wandb`` instead
  (upload later with ``wandb sync``); if offline fails too it becomes a no-op.
  A failed initialisation never raises.
* Every other call goes to W&B directly, so it may block or raise. Training and
  the evaluate command therefore put the logger behind
  :class:`hybridconv.tracking.writers.BackgroundWriter` (the one bounded queue,
  thread and close deadline for every slow logger), which keeps W&B off the
  training thread, drops events with one warning when W&B falls behind and
  turns its failures into one warning.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from absl import logging

from hybridconv.tracking import logger as logger_lib

MODES = ("online", "offline", "disabled")


def artifact_name(name: str) -> str:
  """A valid W&B artifact name (letters, digits, '-', '_', '.')."""
  cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
  if not cleaned:
    raise ValueError(f"artifact name {name!r} has no usable characters")
  return cleaned


class WandbLogger(logger_lib.Logger):
  """Logs to a W&B run, synchronously; see the module docstring.

  Args:
    project: W&B project name.
    entity: W&B entity (user or team); '' for the account's default.
    name: run display name; '' lets W&B choose.
    mode: 'online', 'offline' or 'disabled' ('disabled' never imports wandb).
    init_timeout: seconds ``wandb.init`` may wait for the server.
    directory: where W&B keeps the run's files (``<directory>/wandb``),
      normally the workdir.
    config: the run's config, sent with ``wandb.init``.
    settings: extra ``wandb.Settings`` fields (e.g. ``{'console': 'off'}``).
    run_id: W&B run id; a run started again with the same id (a resumed
      training run) continues the same W&B run instead of starting a new one.
    group, tags, job_type: W&B's grouping fields ('' / () for none); a study
      groups its runs by study and tags them with their factor values.

  Attributes:
    mode: the mode the run uses: the requested one until the first event
      initialises the run, then 'online', 'offline', or 'disabled' after a
      failure.
    run: the ``wandb`` run once initialised, else None.
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
    self._settings = dict(settings or {})
    self.run = None
    self._wandb = None  # the module, once imported
    self._started = False
    self._closed = False
    if directory:
      os.makedirs(directory, exist_ok=True)

  def _ready_run(self):
    """The W&B run, initialised on the first call; None when disabled or closed."""
    if self._closed or self.requested_mode == "disabled":
      return None
    if not self._started:
      self._started = True
      self._start()
    return self.run

  # -- the Logger interface: validate, then call W&B -------------------------

  def log_scalars(self, step, scalars):
    scalars = {k: float(v) for k, v in scalars.items()}
    if (run := self._ready_run()) is not None:
      run.log(scalars, step=int(step))

  def log_images(self, step, images):
    images = {k: logger_lib.check_image(k, v) for k, v in images.items()}
    if (run := self._ready_run()) is not None:
      image = self._wandb.Image
      run.log(
        {k: image(v[..., 0] if v.shape[-1] == 1 else v) for k, v in images.items()}, step=int(step)
      )

  def log_histograms(self, step, histograms):
    histograms = {k: logger_lib.histogram(v) for k, v in histograms.items()}
    if (run := self._ready_run()) is not None:
      to_wandb = self._wandb.Histogram
      run.log(
        {k: to_wandb(np_histogram=(h.counts, h.edges)) for k, h in histograms.items()},
        step=int(step),
      )

  def log_table(self, step, name, columns, rows):
    columns, rows = logger_lib.check_table(name, columns, rows)
    if (run := self._ready_run()) is not None:
      run.log({name: self._wandb.Table(columns=columns, data=rows)}, step=int(step))

  def log_results_table(self, name, columns, rows, *, scalars=None, line_plot=None):
    """A table of results computed after training (robustness), at W&B's current step.

    Logged without a step because W&B drops points below a resumed run's last
    step. ``scalars`` are logged with it; ``line_plot = (key, x column, y
    column, title)`` adds a ``wandb.plot.line`` of the table.
    """
    columns, rows = logger_lib.check_table(name, columns, rows)
    scalars = {k: float(v) for k, v in (scalars or {}).items()}
    if (run := self._ready_run()) is None:
      return
    table = self._wandb.Table(columns=columns, data=rows)
    logged = {name: table, **scalars}
    if line_plot is not None:
      key, x, y, title = line_plot
      logged[key] = self._wandb.plot.line(table, x, y, title=title)
    run.log(logged)

  def log_artifact(self, path_or_ref, name, type):
    path, name = str(path_or_ref), artifact_name(name)
    if (run := self._ready_run()) is None:
      return
    artifact = self._wandb.Artifact(name, type=type)
    if "://" in path:
      # By reference: nothing is uploaded and no file is read (checksum=False),
      # so a large checkpoint costs nothing.
      artifact.add_reference(path, checksum=False)
    elif os.path.isdir(path):
      artifact.add_dir(path)
    else:
      artifact.add_file(path)
    run.log_artifact(artifact)

  def log_config(self, config):
    config = dict(config)
    if (run := self._ready_run()) is not None:
      run.config.update(config, allow_val_change=True)

  def log_video(self, step, name, path):
    path = os.path.abspath(path)
    if (run := self._ready_run()) is not None:
      # A GIF path is copied as it is (no video encoder needed); W&B plays it.
      video = self._wandb.Video(path, format=os.path.splitext(path)[1][1:] or None)
      run.log({name: video}, step=int(step))

  def close(self) -> None:
    """Finishes the run (uploads what is left when online); further calls are ignored."""
    if self._closed:
      return
    self._closed = True
    if self.run is not None:
      self.run.finish()

  # -- initialisation -----------------------------------------------------------

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
      logging.warning("W&B logging disabled: cannot import wandb (%s)", error)
      return
    self._wandb = wandb
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
