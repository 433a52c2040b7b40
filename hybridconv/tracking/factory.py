"""Builds a run's logger from ``config.tracking``: only process 0 writes anything."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from hybridconv.tracking import jsonl_logger, wandb_logger, writers
from hybridconv.tracking import logger as logger_lib


def is_due(step: int, every: int, total_steps: int | None = None) -> bool:
  """Whether a cadence of ``every`` steps fires at ``step`` (0 = never; always at the end).

  Step 0 (before the first update) fires too, so summaries start from the
  initial kernels.
  """
  if every <= 0:
    return False
  return step % every == 0 or (total_steps is not None and step == total_steps)


def check_config(tracking) -> None:
  """Refuses a bad ``config.tracking`` setting from the config alone, before anything starts."""
  mode = tracking.wandb.mode
  if mode not in wandb_logger.MODES:
    raise ValueError(f"tracking.wandb.mode={mode!r} is not one of {wandb_logger.MODES}")


def make_logger(
  tracking: Any,
  workdir: str,
  *,
  is_main_process: bool,
  config: Mapping[str, Any] | None = None,
  extra: Sequence[writers.MetricWriter] = (),
) -> logger_lib.Logger:
  """The run's one logger: JSONL/PNG files in ``workdir``, W&B unless disabled, and extras.

  The train loop writes only to this logger. W&B and each extra writer (e.g. a
  caller's tracker) run behind their own :class:`writers.BackgroundWriter`, so
  their failures and stalls cost a warning, not the run.

  Args:
    tracking: the ``config.tracking`` section
      (declared in ``configs/default.py``).
    workdir: the run directory; W&B keeps its files in ``workdir/wandb``.
    is_main_process: ``jax.process_index() == 0``; other processes get a
      :class:`~hybridconv.tracking.logger.NullLogger`.
    config: the full run config as a plain dict, logged at start.
    extra: further writers of scalar events, on every process.

  Raises:
    ValueError: for a bad ``tracking.wandb`` setting, before anything starts.
  """
  settings = tracking.wandb
  check_config(tracking)
  background = [writers.BackgroundWriter(writer) for writer in extra]
  if not is_main_process:
    return logger_lib.MultiLogger(background) if background else logger_lib.NullLogger()
  loggers: list[logger_lib.Logger] = [jsonl_logger.JsonlLogger(workdir)]
  if settings.mode != "disabled":
    loggers.append(background_wandb(settings, workdir, config=config))
  if config is not None:
    loggers[0].log_config(config)  # W&B received it with wandb.init
  return logger_lib.MultiLogger(loggers + background)


RUN_ID_FILE = "wandb_run_id"


def workdir_run_id(workdir: str) -> str:
  """The W&B run id of this workdir: read from ``workdir/wandb_run_id``, or made and saved there.

  A training run resumed in the same workdir (after preemption, say) then logs
  into the same W&B run. W&B ignores points logged at steps below the run's
  last one, so the steps repeated between the restored checkpoint and the stop
  show once, from the first attempt.
  """
  path = os.path.join(workdir, RUN_ID_FILE)
  try:
    with open(path) as f:
      run_id = f.read().strip()
    if run_id:
      return run_id
  except FileNotFoundError:
    pass
  run_id = uuid.uuid4().hex[:16]
  os.makedirs(workdir, exist_ok=True)
  temporary = f"{path}.tmp{os.getpid()}"
  with open(temporary, "w") as f:
    f.write(run_id + "\n")
  os.replace(temporary, path)
  return run_id


def background_wandb(
  settings, workdir: str, *, config: dict | None = None
) -> writers.BackgroundWriter:
  """The workdir's W&B run (``tracking.wandb`` settings) behind the one background writer.

  Resumes the run whose id the workdir keeps, so a later command (``hybridconv
  evaluate``) adds to the training run rather than starting another.
  """
  return writers.BackgroundWriter(
    wandb_logger.WandbLogger(
      project=settings.project,
      entity=settings.entity,
      name=settings.name,
      mode=settings.mode,
      init_timeout=settings.init_timeout,
      directory=workdir,
      config=config,
      run_id=workdir_run_id(workdir),
      group=settings.group,
      tags=tuple(settings.tags),
      job_type=settings.job_type,
    )
  )
