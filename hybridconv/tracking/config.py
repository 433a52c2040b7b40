"""The ``tracking`` section of a run config, declared once with its meaning.

``configs/default.py`` includes it as ``config.tracking = default_tracking_config()``;
experiment files change values, never add keys.
"""

from __future__ import annotations

import ml_collections


def default_tracking_config() -> ml_collections.ConfigDict:
  """Defaults: W&B offline (no account needed), filter summaries every 500 steps."""
  tracking = ml_collections.ConfigDict()
  tracking.wandb = ml_collections.ConfigDict()
  tracking.wandb.mode = "offline"  # 'online', 'offline' (upload later: `wandb sync`), 'disabled'
  tracking.wandb.project = "hybridconv"  # W&B project
  tracking.wandb.entity = ""  # W&B user or team ('' = the account's default entity)
  tracking.wandb.name = ""  # run display name ('' = W&B picks one)
  tracking.wandb.init_timeout = 30.0  # seconds to reach the server before falling back to offline
  tracking.scalars_every_steps = 50  # per-layer grad/param/update norms join the train scalars
  #   at these steps (0 = never); make it a multiple of log_every_steps
  tracking.filters_every_steps = 500  # filter summaries every n steps, at 0 and at the end; 0 = off
  tracking.gabor_fit = True  # fit Gabors to free kernels (>= 5x5) at the filter cadence: R^2 score
  tracking.animation = True  # at the end, one GIF per layer from its filter PNGs
  tracking.log_checkpoints = False  # log checkpoints to W&B as artifacts by reference (no upload)
  return tracking
