r"""The kernel-choice study on CIFAR-10, for accelerators (no CIFAR-10 offline on the CPU machine).

Variants: ``resnet20`` (default; 3x3 stem of 16 filters) or ``alexnet_small`` (5x5 first layer of
64 filters). Sizes 100 / 500 / 1,000 / all 50,000 training images, 3 seeds, augmentation on, so the
result can be set beside the published small-sample pattern (parametric scattering networks: plain
WRN 38.78 / 62.97 / 71.37 at 100 / 500 / 1,000 samples, fixed scattering 43.16 / 61.66 / 68.16,
random fixed bank 32.08 / 46.84 / 52.76)::

  hybridconv study --config=experiments/kernel_study/cifar10.py:resnet20 \
      --workdir=experiments/kernel_study/results/cifar10_resnet20 --jobs=8 \
      --device_var=CUDA_VISIBLE_DEVICES
  hybridconv compare --workdir=experiments/kernel_study/results/cifar10_resnet20 \
      --reference model.first_layer=free

The dataset must be prepared once (``--config.data.prepare=True`` with TensorFlow, or
``$TFDS_DATA_DIR`` holding it). Arms are those of ``study.py`` at each model's first-layer shape;
every bank gives exactly the layer's width, taking the first filters of a larger bank. The DCT
arm is left out: a 3x3 (5x5) DCT basis has only 9 (25) functions, fewer than the 16 (64) filters.
"""

from __future__ import annotations

import json

from configs import cifar10
from hybridconv.studies.grid import product
from hybridconv.training.durations import spell

MODELS = ("resnet20", "alexnet_small")
SIZES = (100, 500, 1_000, 50_000)
SEEDS = (0, 1, 2)
# training images -> (batch size, epochs)
BUDGETS = {100: (50, 500.0), 500: (100, 200.0), 1_000: (128, 150.0), 50_000: (128, 100.0)}


def _fixed(bank: str, **options) -> dict:
  return {"source": "fixed", "bank": bank, "options": options}


def arms(model: str) -> dict[str, str]:
  """First-layer sources at the model's stem shape (16 filters of 3x3, or 64 of 5x5)."""
  if model == "resnet20":
    gabor = {"num_orientations": 4, "num_scales": 2}  # 4 x 2 x 2 phases = 16
    classic = _fixed("classic_scales", sigmas=[1.0])  # 12 + 10, the first 16
    derivatives = _fixed("gaussian_derivatives", order=3, sigmas=[0.7, 1.0])  # 20, first 16
  else:
    gabor = {"num_orientations": 8, "num_scales": 4}  # 8 x 4 x 2 phases = 64
    classic = _fixed("classic_scales", sigmas=[1.0, 1.5, 2.0, 2.5, 3.0, 3.5])  # 72, first 64
    derivatives = _fixed("gaussian_derivatives", order=4, sigmas=[0.7, 1.0, 1.4, 2.0, 2.8])
  return {
    "free": "free",
    "free_gabor_init": json.dumps({"source": "free", "init": "gabor", "options": gabor}),
    "gabor": "gabor",
    "fixed_gabor": json.dumps(_fixed("gabor", **gabor)),
    "fixed_classic": json.dumps(classic),
    "fixed_gaussian_derivatives": json.dumps(derivatives),
    "random": "random",
    "hybrid": "hybrid",
  }


def get_config(arg: str | None = None):
  model = arg or "resnet20"
  if model not in MODELS:
    raise ValueError(f"unknown config variant {arg!r}; variants: {MODELS}")
  config = cifar10.get_config(f"free,{model}")
  config.tracking.wandb.mode = "offline"
  config.tracking.animation = False
  config.robustness.pgd_images = 1000
  config.checkpoint.keep = 1
  config.checkpoint.keep_best = 0
  return config


def budget(size: int) -> dict:
  batch, epochs = BUDGETS[size]
  steps = int(epochs * size / batch)
  return {
    "batch_size": batch,
    "train_for": spell(epochs, "epochs"),
    "optim.warmup": spell(0.05 * epochs, "epochs"),
    "eval_every": "10%",
    "checkpoint.every": "25%",
    "log_every": spell(max(1, steps // 100), "steps"),
    "tracking.filters_every": "100%",  # snapshots at the start and the end
    "robustness.after_training": size in (1_000, 50_000),
  }


def study(model: str = "resnet20"):
  """Size (cheapest first), seed, arm; the factors first, the budget keys follow the size."""
  for point in product({"size": SIZES, "seed": SEEDS, "arm": list(arms(model))}):
    size = point["size"]
    yield {
      "data.train_size": 0 if size == 50_000 else size,
      "seed": point["seed"],
      "model.first_layer": arms(model)[point["arm"]],
      **budget(size),
    }
