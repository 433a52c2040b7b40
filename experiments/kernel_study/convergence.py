"""Did every arm of the kernel study stop improving within its size's budget?

The budgets were chosen on the free arm's pilot (``budgets.py``); whether they suit every arm is
read from the main study's own validation curves: per (size, arm), the gain in validation
accuracy over the last quarter of training (the reading at the end of the budget minus the
one at three quarters), as a mean over seeds with its 95% t-interval, and the largest gain of
any seed. An arm still learning at the end of its budget would show a clearly positive gain::

  .venv/bin/python experiments/kernel_study/convergence.py \
      [--workdir experiments/kernel_study/results/fashion_mnist] [--threshold 0.1]

``--threshold`` (points) is the gain below which a curve counts as flat; each row says whether
the whole interval lies below it.
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict

from hybridconv.studies import readings, records, stats

DEFAULT_ROOT = os.path.join(os.path.dirname(__file__), "results", "fashion_mnist")
THREE_QUARTERS = 0.75


def last_quarter_gain(run: records.RunRecord) -> float | None:
  """Validation accuracy at the end of the budget minus at three quarters (None if unread)."""
  end = readings.validation_at(run, 1.0)
  before = readings.validation_at(run, THREE_QUARTERS)
  return None if end is None or before is None else end - before


def gains_by_group(runs: list[records.RunRecord]) -> dict[tuple[int, str], list[float]]:
  """``(training size, arm)`` -> each finished seed's last-quarter gain, in points."""
  found: dict[tuple[int, str], list[float]] = defaultdict(list)
  for run in runs:
    gain = last_quarter_gain(run) if run.finished else None
    if gain is not None:
      found[(int(run.flat["data.train_size"]), str(run.flat["arm"]))].append(100 * gain)
  return dict(found)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default=DEFAULT_ROOT)
  parser.add_argument("--threshold", type=float, default=0.1, help="points")
  args = parser.parse_args()
  if not os.path.isdir(args.workdir):
    parser.error(f"--workdir={args.workdir} is not a directory")
  runs = [records.load_run(path) for path in records.find_run_dirs([args.workdir])]
  groups = gains_by_group(runs)
  if not groups:
    parser.error(f"--workdir={args.workdir} holds no finished run with validation readings")
  print("| training images | arm | seeds | gain over the last quarter (points, 95% CI) | largest |")
  print("| ---: | --- | ---: | --- | ---: |")
  flat = 0
  for (size, arm), gains in sorted(groups.items()):
    summary = stats.t_interval(gains)
    below = summary.ci_high < args.threshold
    flat += below
    print(
      f"| {size:,} | {arm} | {summary.n} | {summary.mean:+.2f} ({summary.ci_low:+.2f} to "
      f"{summary.ci_high:+.2f}){'' if below else ' *'} | {max(gains):+.2f} |"
    )
  print(
    f"\n{flat} of {len(groups)} groups: the whole interval below {args.threshold:g} points "
    "(* marks the others)"
  )


if __name__ == "__main__":
  main()
