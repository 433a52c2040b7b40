"""What the kernel-choice study costs in wall time, from the runner's own records.

The study runner appends the wall time of every process it starts for a point to the point's
``point_times.json`` (training attempts, the robustness evaluation). This sums them per
training-set size and projects each size's total from the median point of that size, for sizes
whose points ran before the runner kept the record (their count is printed)::

  .venv/bin/python experiments/kernel_study/study_time.py \
      [--workdir experiments/kernel_study/results/fashion_mnist] [--extra 100=45] [--jobs 2]

``--extra SIZE=SECONDS`` supplies a measured per-point wall time for a size with no record;
``--jobs N``: the runner ran N points at once (each point's wall time then overlaps N-1 others).
"recorded" is the cost paid: the sum of the recorded wall times, divided by ``--jobs``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from hybridconv import run_layout

DEFAULT_ROOT = os.path.join(os.path.dirname(__file__), "results", "fashion_mnist")


def point_seconds(workdir: str) -> float | None:
  """Training plus robustness wall seconds of one point, or None when unrecorded."""
  path = os.path.join(workdir, run_layout.TIMES_FILE)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    times = json.load(f)
  return sum(a["wall_seconds"] for kind in times.values() for a in kind)


def size_seconds(item: str) -> tuple[int, float]:
  """``SIZE=SECONDS`` of ``--extra`` (argparse turns the ValueError into one error line)."""
  size, _, seconds = item.partition("=")
  try:
    return int(size), float(seconds)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{item!r} is not SIZE=SECONDS (e.g. 100=61.3)") from None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default=DEFAULT_ROOT)
  parser.add_argument(
    "--extra", action="append", default=[], type=size_seconds, help="SIZE=SECONDS per point"
  )
  parser.add_argument(
    "--jobs", type=int, default=1, help="points the runner ran at once (run.sh: 2): wall / jobs"
  )
  args = parser.parse_args()
  if args.jobs < 1:
    parser.error(f"--jobs={args.jobs} must be >= 1")
  study_file = os.path.join(args.workdir, run_layout.PLAN_FILE)
  if not os.path.isfile(study_file):
    parser.error(f"--workdir={args.workdir} holds no {run_layout.PLAN_FILE} (not a study root)")
  with open(study_file, encoding="utf-8") as f:
    points = json.load(f)["points"]
  extra = dict(args.extra)
  by_size: dict[int, list[float | None]] = {}
  for name in sorted(os.listdir(args.workdir)):
    if name.startswith("train_size="):
      size = int(name.split(",")[0].split("=")[1]) or 60_000
      by_size.setdefault(size, []).append(point_seconds(os.path.join(args.workdir, name)))
  planned: dict[int, int] = {}
  for point in points:
    size = int(point["data.train_size"]) or 60_000
    planned[size] = planned.get(size, 0) + 1
  total = paid = 0.0
  unknown = []
  print(f"{'size':>6} | points | recorded | median s/point | recorded min | projected min")
  for size in sorted(planned):
    recorded = [s for s in by_size.get(size, []) if s is not None]
    median = statistics.median(recorded) if recorded else extra.get(size)
    if median is None:
      unknown.append(size)
    projected = planned[size] * median / 60 / args.jobs if median else float("nan")
    total += projected
    spent = sum(recorded) / 60 / args.jobs
    paid += spent
    shown = f"{median:.0f}" if median else "-"
    print(
      f"{size:>6} | {planned[size]:>6} | {len(recorded):>8} | {shown:>14} | {spent:>12.1f} | "
      f"{projected:.1f}"
    )
  recorded_points = sum(1 for times in by_size.values() for t in times if t is not None)
  print(
    f"recorded: {recorded_points} of {sum(planned.values())} points, {paid:.0f} min "
    f"({paid / 60:.2f} h) of wall time at {args.jobs} point(s) at a time"
  )
  if unknown:  # a total without them would understate the study
    sizes = ", ".join(map(str, unknown))
    print(f"no projection: sizes {sizes} have no recorded point; pass --extra SIZE=SECONDS")
  else:
    print(f"projected whole study: {total:.0f} min ({total / 60:.2f} h)")


if __name__ == "__main__":
  main()
