"""What the kernel study's pilot and main study share: model, optimiser, data, evaluations.

Fashion-MNIST (Debian's IDX files) with a fixed, class-balanced 5,000-image validation
split held out of the 60,000 training images (``data.validation_seed`` 0: the same images
in every run, never in a training subset); every training subset, of every size and seed,
is drawn from the other 55,000. Runs evaluate on the validation split
``EVALUATIONS`` times along training and on the full 10,000-image test split once, at the
end: budgets are chosen on the validation split (the pilot), and the test split is read
only for the final comparison.

SimpleCNN with a 7x7 first layer of 32 filters (7x7 rather than 5x5 so that Gabor-likeness
can be told from noise), AdamW 2e-3 with weight decay 1e-4, cosine schedule with 5% linear
warm-up, no augmentation.
"""

from __future__ import annotations

from configs import default
from hybridconv import configlib
from hybridconv.training.durations import spell

VALIDATION_IMAGES = 5_000
ALL_IMAGES = 60_000 - VALIDATION_IMAGES  # the largest training set: everything but validation
EVALUATIONS = 8  # validation evaluations along a run (the last at the end, with the test split)
# Training images -> batch size (as in the earlier versions of the study).
BATCH_SIZES = {100: 50, 1_000: 100, 10_000: 128, ALL_IMAGES: 128}
ROBUSTNESS_SIZES = (1_000, ALL_IMAGES)
# Corruptions on a seeded 2,000-image test subset, FGSM/PGD on the first 500 of it: the same
# images for every arm and seed (paired).
ROBUSTNESS_TEST_IMAGES = 2000
ROBUSTNESS_ATTACK_IMAGES = 500


def base_config():
  """One point of the study: free first layer, all training images; studies vary it."""
  config = default.get_config()
  config.data.source = "idx"
  config.data.name = "fashion_mnist"
  config.data.validation_size = VALIDATION_IMAGES
  config.data.validation_seed = 0
  config.model.name = "simple_cnn"
  config.model.first_layer = "free"
  config.model.first_kernel_size = 7
  config.optim.name = "adamw"
  config.optim.learning_rate = 2e-3
  config.optim.weight_decay = 1e-4
  config.eval_batch_size = 1000
  config.tracking.wandb.mode = "disabled"  # the study commits light records, not W&B folders
  config.tracking.animation = False
  # Gabor-likeness is scored once per run by `hybridconv compare` from the first-layer
  # snapshots at the start and the end; the tracker's own fit of every layer is not read.
  config.tracking.gabor_fit = False
  config.robustness.test_images = ROBUSTNESS_TEST_IMAGES
  config.robustness.pgd_images = ROBUSTNESS_ATTACK_IMAGES
  config.checkpoint.keep = 1
  config.checkpoint.keep_best = 0
  configlib.apply_overrides(config, budget_overrides(ALL_IMAGES, 1.0))
  return config


def budget_overrides(size: int, epochs: float, *, robustness: bool = False) -> dict:
  """The keys that set a training size's batch, length and cadences for ``epochs`` of training."""
  batch = BATCH_SIZES[size]
  steps = int(epochs * size / batch)
  return {
    "data.train_size": size,
    "train_for": spell(epochs, "epochs"),
    "batch_size": batch,
    "optim.warmup": spell(0.05 * epochs, "epochs"),
    "eval_every": spell(epochs / EVALUATIONS, "epochs"),
    "checkpoint.every": spell(epochs / 4, "epochs"),
    "log_every": spell(max(1, steps // 50), "steps"),
    "tracking.scalars_every": spell(max(1, steps // 50), "steps"),
    "tracking.filters_every": spell(steps, "steps"),  # snapshots at the start and the end
    "robustness.after_training": robustness,
  }
