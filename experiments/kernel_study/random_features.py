r"""Random frozen features: ResNet-20 with every conv random and frozen, BN and classifier learned.

The setting of Frankle et al. (2021, "Training BatchNorm and only BatchNorm"),
who report 82% on CIFAR-10 with deep ResNets, here on Fashion-MNIST against
the same ResNet-20 fully trained, 3 seeds each, the same budget (SGD,
Nesterov, 1 epoch, crop-and-flip augmentation). Random kernels are He-normal
draws from each run's seed folded with the layer's name.

  hybridconv study --config=experiments/kernel_study/random_features.py \
      --workdir=experiments/kernel_study/results/random_features
  hybridconv compare --workdir=experiments/kernel_study/results/random_features \
      --reference model.kernels='{}' --no-likeness
"""

from __future__ import annotations

from configs import fashion_mnist
from hybridconv.studies.grid import product
from hybridconv.training.durations import spell

# One epoch: six ResNet-20 runs (the free ones at about 250 img/s here) fit the 30-minute budget.
EPOCHS = 1.0
SEEDS = (0, 1, 2)


def get_config(arg: str | None = None):
  if arg:
    raise ValueError(f"unknown config variant {arg!r}: this study file has none")
  config = fashion_mnist.get_config("free,resnet20")
  config.train_for = spell(EPOCHS, "epochs")
  config.eval_every = "50%"
  config.checkpoint.every = "50%"
  config.checkpoint.keep = 1
  config.checkpoint.keep_best = 0
  config.tracking.wandb.mode = "disabled"
  config.tracking.animation = False
  config.tracking.filters_every = "never"
  config.log_every = "100 steps"
  config.tracking.scalars_every = "100 steps"
  return config


def study():
  """Every conv random and frozen (BN + classifier trained) vs all free; 3 paired seeds.

  Seed by seed, both arms of a seed together, so a partial run holds complete pairs.
  """
  for seed in SEEDS:
    yield from product({"model.kernels": [{}, {"*": "random"}], "seed": [seed]})
