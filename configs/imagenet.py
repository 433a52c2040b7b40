"""ImageNet (TFDS ``imagenet2012``): AlexNet in the 2012 layout, or ResNet-50.

Variants: a kernel source for the first conv (free, gabor, fixed, random,
hybrid; default ``free``) optionally with a model (``alexnet``, the default, or
``resnet50``), e.g. ``configs/imagenet.py:gabor,resnet50``. Streams through
grain with per-process shards; prepare the TFDS dataset (manual download) first.
The JPEGs stay encoded in the ArrayRecord files and are decoded, random-resized
cropped (scale 0.08-1, ratio 3/4-4/3) and flipped to 224x224 in grain worker
processes (one per core but one); evaluation resizes the shorter side to 256
and centre-crops 224. For multi-host accelerators: the global batch is split
over every device.
"""

from __future__ import annotations

from configs import default

KERNEL_SOURCES = default.KERNEL_SOURCES
MODELS = ("alexnet", "resnet50")


def get_config(arg: str | None = None):
  source, model, _ = default.parse_variant(
    arg, default_source="free", models=MODELS, default_model="alexnet"
  )
  config = default.get_config()
  config.data.source = "tfds"
  config.data.name = "imagenet2012"
  config.data.pipeline = "streaming"
  config.data.augment.horizontal_flip = True
  config.data.decode.image_size = 224  # Krizhevsky et al. took 224 crops too (227 in Caffe)
  config.data.decode.eval_resize = 256
  config.data.decode.workers = -1
  config.model.name = model
  config.model.first_layer = source
  if config.model.first_layer == "fixed":
    # The stems have 96 (AlexNet) and 64 (ResNet-50) filters, the default bank 32.
    config.model.kernels.conv1 = default.fixed_gabor_bank(
      96 if config.model.name == "alexnet" else 64
    )
  config.compute_dtype = "bfloat16"
  config.batch_size = 1024
  config.eval_batch_size = 1024
  config.log_every = "100 steps"
  config.eval_every = "1 epoch"
  config.checkpoint.every = "1 epoch"
  config.checkpoint.keep = 3
  config.optim.name = "sgd"
  config.optim.momentum = 0.9
  config.optim.nesterov = True
  config.label_smoothing = 0.1
  if config.model.name == "resnet50":
    # Goyal et al. (2017): lr 0.1 per 256 images, 5 warm-up epochs; cosine instead of steps.
    config.train_for = "90 epochs"
    config.optim.learning_rate = 0.1
    config.optim.reference_batch_size = 256
    config.optim.warmup = "5 epochs"
    config.optim.weight_decay = 1e-4
    config.optim.schedule = "cosine"
  else:
    # Krizhevsky et al. (2012): lr 0.01 at batch 128, /10 on plateaus (here: fixed epochs).
    config.train_for = "90 epochs"
    config.optim.learning_rate = 0.01
    config.optim.reference_batch_size = 128
    config.optim.warmup = "2 epochs"
    config.optim.weight_decay = 5e-4
    config.optim.schedule = "step"
    config.optim.step_at = ("30 epochs", "60 epochs", "80 epochs")
  return config
