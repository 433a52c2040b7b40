"""Experiment tracking: one logger interface, filter summaries and norms.

Typical use in a training loop (only process 0 writes; see docs/tracking.md
for where each call goes)::

  from hybridconv import tracking
  logger = tracking.make_logger(config.tracking, workdir, is_main_process=is_main_process,
                                config=config.to_dict())
  tracker = tracking.FilterTracker(logger, gabor_fit=config.tracking.gabor_fit)
  ...
  scalars.update(tracking.scalar_metrics(grads, params, updates))   # inside the jitted step
  logger.log_scalars(step, scalars)
  if tracking.is_due(step, filters_every, total_steps):  # config.tracking.filters_every, in steps
    tracker(model, step)
  ...
  tracking.log_animations(logger, workdir, step)  # GIFs into the workdir and to W&B
  logger.close()
"""

from hybridconv.tracking.factory import check_config, is_due, make_logger
from hybridconv.tracking.filters import FilterTracker, local_replica, log_animations
from hybridconv.tracking.images import kernel_grid, write_animations
from hybridconv.tracking.jsonl_logger import JsonlLogger, read_events, read_metrics
from hybridconv.tracking.logger import (
  Histogram,
  Logger,
  MemoryLogger,
  MultiLogger,
  NullLogger,
)
from hybridconv.tracking.norms import scalar_metrics, without_layer_norms
from hybridconv.tracking.wandb_logger import WandbLogger

__all__ = [
  "FilterTracker",
  "Histogram",
  "JsonlLogger",
  "Logger",
  "MemoryLogger",
  "MultiLogger",
  "NullLogger",
  "WandbLogger",
  "check_config",
  "is_due",
  "kernel_grid",
  "local_replica",
  "log_animations",
  "make_logger",
  "read_events",
  "read_metrics",
  "scalar_metrics",
  "without_layer_norms",
  "write_animations",
]
