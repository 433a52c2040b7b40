r"""Fashion-MNIST: SimpleCNN or ResNet-20 with a chosen first-layer kernel source.

Variants are comma-separated tokens, e.g. ``configs/fashion_mnist.py:hybrid``,
``:gabor,long`` or ``:free,resnet20``:

* kernel source of the first conv (one of): ``free``, ``gabor``, ``fixed``,
  ``random``, ``hybrid`` (half Gabor, half free);
* ``long``: the longer schedule with augmentation (about 20 epochs; SimpleCNN
  reaches >= 92.5% test accuracy on CPU);
* ``resnet20``: ResNet-20 instead of SimpleCNN, with SGD and augmentation.

Without ``long`` the run is the quickstart: 3 epochs, a few minutes on a laptop CPU.
"""

from __future__ import annotations

from configs import default

KERNEL_SOURCES = default.KERNEL_SOURCES
OPTIONS = ("long", "resnet20")


def get_config(arg: str | None = None):
  source, _, options = default.parse_variant(arg, default_source="hybrid", options=OPTIONS)
  config = default.get_config()
  config.data.source = "idx"
  config.data.name = "fashion_mnist"
  config.model.name = "simple_cnn"
  config.model.first_layer = source
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.train_for = "3 epochs"
  config.optim.name = "adamw"
  config.optim.learning_rate = 2e-3
  config.optim.warmup = "0.2 epochs"
  config.optim.weight_decay = 1e-4
  if "long" in options:
    config.train_for = "20 epochs"
    config.data.augment.crop_padding = 2
    config.data.augment.horizontal_flip = True
    config.label_smoothing = 0.1
    config.optim.weight_decay = 0.05  # decoupled (AdamW): shrinks by lr * 0.05 per step
  if "resnet20" in options:
    config.model.name = "resnet20"
    config.train_for = "30 epochs" if "long" in options else "10 epochs"
    config.optim.name = "sgd"
    config.optim.learning_rate = 0.1
    config.optim.weight_decay = 5e-4
    config.optim.warmup = "1 epoch"
    config.data.augment.crop_padding = 2
    config.data.augment.horizontal_flip = True
  return config


def study():
  """First-layer kernel source x seed: the basic comparison, 5 sources x 3 seeds."""
  for seed in range(3):
    for source in KERNEL_SOURCES:
      yield {"model.first_layer": source, "seed": seed}
