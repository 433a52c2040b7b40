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
  .venv/bin/python -m experiments.kernel_study.budget_check   # both budgets side by side

The last line prints, per arm, the paired difference to the reference in final test accuracy at
the main study's budget and at twice it (the same four seeds), and how much the difference
changed when the budget doubled (per seed: the difference at 24 epochs minus at 12), each with
its 95% t-interval.

The arms were fixed before any of these runs: the reference, the arm with the largest mean
paired lead in final test accuracy at 10,000 images in the main study
(``fixed_gaussian_derivatives``, +0.74 points) and the fixed Gabor bank (+0.62), the bank the
project's question is about; 12 points, about half an hour on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from experiments.kernel_study import design
from experiments.kernel_study import study as main_study
from hybridconv.studies import records, stats

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


RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
MAIN_ROOT = os.path.join(RESULTS, "fashion_mnist")
CHECK_ROOT = os.path.join(RESULTS, "budget_check")


def final_accuracies(root: str, name: str) -> dict[str, dict[int, float]]:
  """``arm -> seed -> final test accuracy`` of the check's arms and seeds under ``root``;
  ``name`` formats a point's directory from ``seed`` and ``arm``."""
  found: dict[str, dict[int, float]] = {}
  for arm in ARMS:
    for seed in range(SEEDS):
      path = os.path.join(root, name.format(seed=seed, arm=arm))
      run = records.load_run(path) if os.path.isdir(path) else None
      if run is not None and run.finished:
        found.setdefault(arm, {})[seed] = run.final("eval/accuracy")
  return found


def _cell(diff: stats.PairedDifference) -> str:
  if diff.n < 2:
    return f"n = {diff.n}"
  return (
    f"{100 * diff.mean:+.2f} ({100 * diff.ci_low:+.2f} to {100 * diff.ci_high:+.2f}), "
    f"{diff.wins}/{diff.n} ahead"
  )


def side_by_side(
  main: Mapping[str, Mapping[int, float]], doubled: Mapping[str, Mapping[int, float]]
) -> list[str]:
  """The markdown table of the check: each arm against the reference at both budgets."""
  reference = ARMS[0]
  lines = [
    f"| arm | vs `{reference}`, {main_study.BUDGETS[SIZE]:g} epochs | vs `{reference}`, "
    f"{EPOCHS:g} epochs | change when the budget doubled |",
    "| --- | --- | --- | --- |",
  ]
  for arm in ARMS[1:]:
    at_main = stats.paired_difference(main[arm], main[reference])
    at_doubled = stats.paired_difference(doubled[arm], doubled[reference])
    seeds = set(main[arm]) & set(main[reference]) & set(doubled[arm]) & set(doubled[reference])
    change = stats.t_interval(
      [
        (doubled[arm][s] - doubled[reference][s]) - (main[arm][s] - main[reference][s])
        for s in sorted(seeds)
      ]
    )
    lines.append(
      f"| `{arm}` | {_cell(at_main)} | {_cell(at_doubled)} | {100 * change.mean:+.2f} "
      f"({100 * change.ci_low:+.2f} to {100 * change.ci_high:+.2f}) |"
    )
  own = [
    stats.t_interval([doubled[a][s] - main[a][s] for s in sorted(set(main[a]) & set(doubled[a]))])
    for a in ARMS
  ]
  lines += [
    "",
    "Each arm's own change in final test accuracy when its budget doubled (points, same seeds): "
    + ", ".join(
      f"`{a}` {100 * c.mean:+.2f} ({100 * c.ci_low:+.2f} to {100 * c.ci_high:+.2f})"
      for a, c in zip(ARMS, own, strict=True)
    )
    + ".",
  ]
  return lines


def main(argv: Sequence[str] | None = None) -> int:
  # No options: parsed so that --help answers and a stray argument is refused in one line.
  argparse.ArgumentParser(description="The budget check beside the main study.").parse_args(argv)
  main_runs = final_accuracies(MAIN_ROOT, f"train_size={SIZE},seed={{seed}},arm={{arm}}")
  doubled = final_accuracies(CHECK_ROOT, "seed={seed},arm={arm}")
  missing = [
    a for a in ARMS if len(doubled.get(a, {})) < SEEDS or len(main_runs.get(a, {})) < SEEDS
  ]
  if missing:
    print(f"error: unfinished points of {', '.join(missing)}; run the check first", file=sys.stderr)
    return 2
  print("\n".join(side_by_side(main_runs, doubled)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
