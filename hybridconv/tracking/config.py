"""The ``tracking`` section of a run config, declared once with its meaning.

``configs/default.py`` declares the same keys inline (its test wants every key
assigned there with a comment); this function is the section on its own, for
code and tests that need a tracking config without the whole run config.
``tracking.scalars_every_steps``: the per-layer norms are computed in every
train step (a few reductions) and join the logged train scalars at log events
on this cadence, keeping ``metrics.jsonl`` small for deep models.
"""

from __future__ import annotations

import ml_collections


def default_tracking_config() -> ml_collections.ConfigDict:
  """Defaults: W&B offline (no account needed), filter summaries every 500 steps."""
  tracking = ml_collections.ConfigDict()
  tracking.wandb = ml_collections.ConfigDict()
  tracking.wandb.mode = "offline"  # 'online', 'offline' (`wandb sync` later) or 'disabled'
  tracking.wandb.project = "hybridconv"  # W&B project
  tracking.wandb.entity = ""  # W&B user or team ('' = the account's default)
  tracking.wandb.name = ""  # run display name ('' = W&B picks one)
  tracking.wandb.init_timeout = 30.0  # seconds to reach W&B before going offline
  tracking.scalars_every_steps = 50  # per-layer grad/param/update norms logged here
  tracking.filters_every_steps = 500  # filter summaries: step 0, every n, end (0 = off)
  tracking.gabor_fit = True  # Gabor-fit free kernels >= 5x5 in summaries (R^2 score)
  tracking.animation = True  # at the end, one GIF per layer from its filter PNGs
  tracking.log_checkpoints = False  # checkpoints to W&B as artifacts by reference
  return tracking
