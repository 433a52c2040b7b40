"""The sixth arm of the 55,000-image points, chosen from the 10,000-image runs by a fixed rule.

At 55,000 images the study runs ``study.LARGEST_SIZE_ARMS`` and one more: among the other
arms, the one with the highest mean final *validation* accuracy over the 10,000-image seeds
(the test split chooses nothing). It can be chosen only once every planned 10,000-image
point has finished; ``study.LARGEST_SIZE_EXTRA_ARM`` then copies it (a test checks).

  .venv/bin/python -m experiments.kernel_study.extra_arm \
      [--workdir experiments/kernel_study/results/fashion_mnist]
"""

from __future__ import annotations

import argparse
import statistics
import sys

from experiments.kernel_study import study
from hybridconv.studies import records

DEFAULT_ROOT = "experiments/kernel_study/results/fashion_mnist"
SIZE = 10_000


def validation_means(root: str) -> tuple[dict[str, float], int]:
  """Arm -> mean final validation accuracy at 10,000 images, and the finished points counted."""
  by_arm: dict[str, list[float]] = {}
  for path in records.find_run_dirs([root]):
    run = records.load_run(path)
    if run.finished and int(run.flat.get("data.train_size") or 0) == SIZE:
      by_arm.setdefault(str(run.flat.get("arm")), []).append(run.final("val/accuracy"))
  count = sum(len(values) for values in by_arm.values())
  return {arm: statistics.fmean(values) for arm, values in by_arm.items()}, count


def choose(means: dict[str, float]) -> str:
  """The candidate arm (not already run at 55,000) with the highest mean validation accuracy."""
  candidates = {arm: m for arm, m in means.items() if arm not in study.LARGEST_SIZE_ARMS}
  return max(sorted(candidates), key=lambda arm: candidates[arm])


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default=DEFAULT_ROOT)
  args = parser.parse_args(argv)
  means, count = validation_means(args.workdir)
  planned = len(study.arms_at(SIZE)) * study.SEEDS[SIZE]
  if count < planned:
    print(
      f"error: {count} of the {planned} planned {SIZE:,}-image points have finished under "
      f"{args.workdir}; the arm is chosen once all have",
      file=sys.stderr,
    )
    return 2
  for arm, mean in sorted(means.items(), key=lambda item: -item[1]):
    print(f"{arm:>28}: {100 * mean:.2f}%")
  print(f"chosen: {choose(means)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
