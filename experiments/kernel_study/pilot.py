r"""The kernel study's budget pilot: the reference arm (free filters) on a ladder of budgets.

Each training size's budget is chosen from these runs on the validation split, never the
test split, before any run of the main study, and every arm of a size gets it. Each rung
doubles the one before; runs evaluate the validation split 8 times along training, so the
curves also show the road. The rule (:mod:`experiments.kernel_study.budgets`): the
shortest rung whose final validation accuracy (mean over the pilot's seeds) is within
``TOLERANCE`` points of the best rung of its size; doubling beyond it buys no more than
that.

  hybridconv study --config=experiments/kernel_study/pilot.py \
      --workdir=experiments/kernel_study/results/pilot
  .venv/bin/python -m experiments.kernel_study.budgets   # the rule's result and curves
"""

from __future__ import annotations

from experiments.kernel_study import design
from hybridconv.studies.grid import product
from hybridconv.training.durations import spell

# Training images -> doubling ladder of epochs (the second version's budgets were 80, 25, 3
# and half an epoch: the ladders reach 4 to 16 times further).
LADDERS = {
  100: (40.0, 80.0, 160.0, 320.0),
  1_000: (12.5, 25.0, 50.0, 100.0),
  10_000: (3.0, 6.0, 12.0, 24.0),
  # 16 epochs added after the first four rungs put the choice on the longest rung (8 epochs,
  # +0.50 points over 4): the rule needs a longer rung to tell "still rising" from "converged".
  design.ALL_IMAGES: (1.0, 2.0, 4.0, 8.0, 16.0),
}
# Seeds per size: two where runs are cheap, one at the large sizes (their seed-to-seed SD of
# final accuracy was 0.2-0.3 points in the second version).
SEEDS = {100: (0, 1), 1_000: (0, 1), 10_000: (0,), design.ALL_IMAGES: (0,)}
TOLERANCE = 0.2  # accuracy points


def get_config(arg: str | None = None):
  if arg:
    raise ValueError(f"unknown config variant {arg!r}: the pilot file has none")
  return design.base_config()


def study():
  """Size (cheapest first), then budget, then seed: the free arm only."""
  for size, ladder in LADDERS.items():
    for point in product({"epochs": ladder, "seed": SEEDS[size]}):
      yield {
        "data.train_size": size,
        "train_for": spell(point["epochs"], "epochs"),
        "seed": point["seed"],
        **design.budget_overrides(size, point["epochs"]),
      }
