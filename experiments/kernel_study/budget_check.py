r"""Do the kernel study's leads at 10,000 images hold when the budget doubles?

The budgets come from the free arm's pilot (``budgets.py``): at 10,000 images, 12 epochs, the
shortest rung within 0.2 points of the best (24 epochs scored lower for the free arm). The
other arms were not on that ladder, and the main study's validation curves still rise over
the last quarter of the budget as the cosine schedule anneals (``convergence.py``). This check
reruns the reference and the two arms that lead it most at 10,000 images with **twice the
budget** (24 epochs: the same schedule stretched), on the main study's seeds 0-3 (same
subsets, orders and initial values), so ``hybridconv compare`` gives their paired
differences at the doubled budget beside the main study's::

  hybridconv study --config=experiments/kernel_study/budget_check.py \
      --workdir=experiments/kernel_study/results/budget_check --jobs=2 --config.cpu_devices=1
  hybridconv compare --workdir=experiments/kernel_study/results/budget_check --reference arm=free

The arms were fixed before any of these runs: the reference, the arm with the largest mean
paired lead in final test accuracy at 10,000 images in the main study
(``fixed_gaussian_derivatives``, +0.74 points) and the fixed Gabor bank (+0.62), the bank the
project's question is about; 12 points, about half an hour on the 2-core CPU.
"""

from __future__ import annotations

from experiments.kernel_study import design
from experiments.kernel_study import study as main_study

SIZE = 10_000
EPOCHS = 2 * main_study.BUDGETS[SIZE]
SEEDS = 4
ARMS = ("free", "fixed_gaussian_derivatives", "fixed_gabor")


def get_config(arg: str | None = None):
  """The main study's base config; ``study()`` varies it."""
  return main_study.get_config(arg)


def study():
  """Seed, then arm, at the doubled budget."""
  overrides = design.budget_overrides(SIZE, EPOCHS)
  for seed in range(SEEDS):
    for arm in ARMS:
      yield {
        "data.train_size": SIZE,
        "seed": seed,
        "arm": arm,
        "model.first_layer": main_study.ARMS[arm],
        **overrides,
      }
