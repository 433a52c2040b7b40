"""CIFAR-10 (TFDS) with ResNet-20 or the small-image AlexNet.

Variants are comma-separated tokens: a kernel source for the first conv (free,
gabor, fixed, random, hybrid; default ``free``), optionally a model
(``resnet20``, the default, or ``alexnet_small``), e.g.
``configs/cifar10.py:gabor,alexnet_small``. The dataset must be prepared once
(``--config.data.prepare=True``, needs TensorFlow) or already be in
``$TFDS_DATA_DIR``. Meant for an accelerator: ResNet-20 runs about 100 epochs
of SGD with crop and flip augmentation.
"""

from __future__ import annotations

from configs import default

KERNEL_SOURCES = default.KERNEL_SOURCES
MODELS = ("resnet20", "alexnet_small")


def get_config(arg: str | None = None):
  source, model, _ = default.parse_variant(
    arg, default_source="free", models=MODELS, default_model="resnet20"
  )
  config = default.get_config()
  config.data.source = "tfds"
  config.data.name = "cifar10"
  config.data.pipeline = "device"
  config.data.augment.crop_padding = 4
  config.data.augment.horizontal_flip = True
  config.model.name = model
  config.model.first_layer = source
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.train_for = "100 epochs"
  config.log_every = "100 steps"
  config.optim.name = "sgd"
  config.optim.learning_rate = 0.1
  config.optim.momentum = 0.9
  config.optim.nesterov = True
  config.optim.weight_decay = 5e-4
  config.optim.warmup = "2 epochs"
  config.optim.schedule = "cosine"
  if config.model.name == "alexnet_small":
    config.optim.learning_rate = 0.02
    config.train_for = "60 epochs"
    if config.model.first_layer == "fixed":  # 64 filters; the default bank has 32
      config.model.kernels.conv1 = default.fixed_gabor_bank(64)
  return config


def study():
  """First-layer kernel source x seed for ResNet-20."""
  for seed in range(3):
    for source in KERNEL_SOURCES:
      yield {"model.first_layer": source, "seed": seed}
