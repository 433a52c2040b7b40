"""Procedural oriented gratings: which first-layer kernels read orientation best?

``configs/gratings.py:<source>`` with source one of free, gabor, fixed, random,
hybrid (default ``gabor``). 32x32 gratings, 8 orientation classes, SimpleCNN;
a minute or two on CPU. ``--config.data.gratings.task=frequency`` asks for the
spatial-frequency bin instead.
"""

from __future__ import annotations

from configs import default

KERNEL_SOURCES = default.KERNEL_SOURCES


def get_config(arg: str | None = None):
  source, _, _ = default.parse_variant(arg, default_source="gabor")
  config = default.get_config()
  config.data.source = "gratings"
  config.data.name = "gratings"
  config.data.gratings.num_train = 10_000
  config.data.gratings.num_test = 2_000
  config.data.gratings.image_size = 32
  config.data.gratings.task = "orientation"
  config.data.gratings.num_classes = 8
  config.data.gratings.noise = 0.2
  config.model.name = "simple_cnn"
  config.model.first_layer = source
  config.batch_size = 128
  config.train_for = "5 epochs"
  config.optim.name = "adamw"
  config.optim.learning_rate = 2e-3
  return config


def study():
  """Kernel source x task x seed."""
  for seed in range(3):
    for task in ("orientation", "frequency"):
      for source in KERNEL_SOURCES:
        yield {"model.first_layer": source, "data.gratings.task": task, "seed": seed}
