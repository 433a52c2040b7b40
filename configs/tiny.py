"""A seconds-long smoke run on small procedural gratings: for tests and for checking an install.

``python -m hybridconv.main --config=configs/tiny.py --workdir=/tmp/tiny`` trains a
quarter-width SimpleCNN for 8 steps on 16x16 gratings. The variant picks the
first-layer kernel source (default ``hybrid``).
"""

from __future__ import annotations

from configs import default

KERNEL_SOURCES = default.KERNEL_SOURCES


def get_config(arg: str | None = None):
  source, _, _ = default.parse_variant(arg, default_source="hybrid")
  config = default.get_config()
  config.data.source = "gratings"
  config.data.name = "gratings"
  config.data.gratings.num_train = 256
  config.data.gratings.num_test = 100
  config.data.gratings.image_size = 16
  config.data.gratings.num_classes = 4
  config.model.name = "simple_cnn"
  config.model.first_layer = source
  config.model.width = 0.25
  config.batch_size = 32
  config.eval_batch_size = 64
  config.train_for = "8 steps"
  config.log_every = "2 steps"
  config.eval_every = "1 epoch"
  config.checkpoint.every = "0.5 epochs"
  config.optim.warmup = "0.25 epochs"
  # Tests turn tracking on where they test it; elsewhere it would only add
  # a wandb process and a Gabor-fit compile to every smoke run.
  config.tracking.wandb.mode = "disabled"
  config.tracking.filters_every = "never"
  return config


def study():
  """Two points, for testing the study runner."""
  for source in ("free", "gabor"):
    yield {"model.first_layer": source}
