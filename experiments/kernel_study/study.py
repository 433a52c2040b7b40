r"""The kernel-choice study (third version): which first-layer kernels, at which training-set size.

Fashion-MNIST, SimpleCNN with a 7x7 first layer of 32 filters whose kernels come from one of
eleven sources (the arms); everything after the first layer is free and starts bit-identical
in every arm of a seed (per-layer init streams, :mod:`hybridconv.nn.layer_rngs`). Seed s of
every arm also trains on the same class-balanced subset in the same order: a paired design.
Model, optimiser, validation split and evaluations: :mod:`experiments.kernel_study.design`.

Run, resume and report (the runner skips finished points, committed ones too)::

  hybridconv study --config=experiments/kernel_study/study.py \
      --workdir=experiments/kernel_study/results/fashion_mnist
  hybridconv compare --workdir=experiments/kernel_study/results/fashion_mnist --reference arm=free

Design, fixed before any run of this version (README.md beside this file):

* sizes 100, 1,000, 10,000 and all 55,000 training images (60,000 less the validation split);
* budgets per size from the free arm's validation pilot (``pilot.py``, rule in
  ``budgets.py``), the same for every arm: :data:`BUDGETS`;
* paired seeds per size from the CI half-widths the second version's paired SDs give:
  :data:`SEEDS`;
* every arm at 100, 1,000 and 10,000 images; at 55,000 the reference, Gabor-initialised
  free, fixed and learnable Gabor, random frozen, and the arm with the highest mean
  validation accuracy at 10,000 among the others (:data:`LARGEST_SIZE_ARMS`);
* robustness (noise, blur, contrast on 2,000 test images, FGSM and PGD on 500) for every arm
  and seed at 1,000 and 55,000 images.
"""

from __future__ import annotations

import json

from experiments.kernel_study import design

# First-layer kernel sources, by arm name (the value of model.first_layer).
# (JSON: model.first_layer is a string key; sources.parse reads JSON objects.)
GAUSSIAN_DERIVATIVES = json.dumps(
  {
    "source": "hybrid",
    "groups": [
      [
        {
          "source": "fixed",
          "bank": "gaussian_derivatives",
          "options": {"order": 3, "sigmas": [1.0, 1.6, 2.5]},
        },
        30,
      ],
      [{"source": "fixed", "bank": "log", "options": {"sigmas": [1.0, 2.0]}}, 2],
    ],
  }
)
# Gavrikov & Keuper (arXiv 2301.11360): random spatial filters, never trained, recombined by
# a learned 1x1 convolution. 32 random 7x7 filters, linear mix to the layer's 32 channels.
RANDOM_MIX = json.dumps(
  {"source": "bankmix", "bank": "random", "num_filters": 32, "norm": "none", "activation": "none"}
)
# Babaiee et al. (arXiv 2412.16751): a small frozen set of Gaussian, DoG and Gaussian-derivative
# filters in a depthwise layer; 8 filters (hybridconv.kernels.gaussian.master_key_bank), linear
# mix to 32 channels.
MASTER_KEY_MIX = json.dumps(
  {
    "source": "bankmix",
    "bank": {"source": "fixed", "bank": "master_key"},
    "norm": "none",
    "activation": "none",
  }
)
ARMS = {
  "free": "free",  # LeCun-normal init, learned
  "free_gabor_init": "free:init=gabor",  # the fixed Gabor bank as init, then learned
  "gabor": "gabor",  # parametric Gabor: orientation, frequency, width, ... learned
  "fixed_gabor": "fixed:gabor",  # 8 orientations x 2 scales x 2 phases, frozen
  "fixed_classic": "fixed:classic_scales",  # Sobel, Prewitt, Scharr, Laplacian, blurs ...
  "fixed_gaussian_derivatives": GAUSSIAN_DERIVATIVES,
  "fixed_dct": "fixed:dct",  # the 32 lowest-frequency 2-D DCT basis functions
  "random": "random",  # He-normal, frozen, drawn from the run's seed and the layer name
  "hybrid": "hybrid",  # 16 parametric Gabor + 16 free
  "random_mix": RANDOM_MIX,  # random frozen depthwise bank + learned 1x1 mix
  "master_key_mix": MASTER_KEY_MIX,  # 8 frozen Gaussian/DoG/derivative filters + learned mix
}
SIZES = (100, 1_000, 10_000, design.ALL_IMAGES)
# Paired seeds per size: the second version's paired-difference SDs (1.03, 0.35, 0.23 and
# 0.33 points at 100, 1,000, 10,000 and 60,000 images) give a 95% CI half-width near 0.3-0.5
# points with these counts.
SEEDS = {100: 20, 1_000: 10, 10_000: 8, design.ALL_IMAGES: 6}
# Training images -> epochs, chosen by the pilot's rule (results/pilot/budgets.json, PILOT.md).
BUDGETS: dict[int, float] = {100: 80.0, 1_000: 50.0, 10_000: 12.0, design.ALL_IMAGES: 8.0}
# The arms at 55,000 images; the last is chosen from the 10,000-image runs by validation
# accuracy (never the test split) once they have finished, by `python -m
# experiments.kernel_study.extra_arm` (None until then; a test checks the copy).
LARGEST_SIZE_ARMS = ("free", "free_gabor_init", "fixed_gabor", "gabor", "random")
LARGEST_SIZE_EXTRA_ARM: str | None = "fixed_gaussian_derivatives"


def get_config(arg: str | None = None):
  """The study's base config (one point: free, all images); ``study()`` varies it."""
  if arg:
    raise ValueError(f"unknown config variant {arg!r}: this study file has none")
  return design.base_config()


def arms_at(size: int) -> list[str]:
  """The arms run at ``size`` images."""
  if size != design.ALL_IMAGES:
    return list(ARMS)
  return [*LARGEST_SIZE_ARMS, *([LARGEST_SIZE_EXTRA_ARM] if LARGEST_SIZE_EXTRA_ARM else [])]


def study():
  """Size (cheapest first), then seed, then arm: a partial run has whole seeds of every arm.

  A size without a chosen budget yields no points yet.
  """
  for size in SIZES:
    if size not in BUDGETS:
      continue
    overrides = design.budget_overrides(
      size, BUDGETS[size], robustness=size in design.ROBUSTNESS_SIZES
    )
    for seed in range(SEEDS[size]):
      for arm in arms_at(size):
        # Factors first: the runner names points by them; the budget keys follow the size.
        yield {
          "data.train_size": size,
          "seed": seed,
          "arm": arm,
          "model.first_layer": ARMS[arm],
          **overrides,
        }
