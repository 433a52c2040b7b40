"""The kernel study's budgets, chosen by a fixed rule from the pilot's validation curves.

Reads the pilot's runs (``pilot.py``: the free arm on a doubling ladder of epochs per
training size), and for each size takes the shortest rung whose final validation
accuracy, averaged over the pilot's seeds, is within ``pilot.TOLERANCE`` points of the
best rung of that size. Writes, beside the runs::

  budgets.json        size -> chosen epochs, with every rung's validation accuracies
  PILOT.md            the rule, the table it was applied to, and the choice
  pilot_curves.png    validation accuracy against training images seen, one line a rung

  .venv/bin/python -m experiments.kernel_study.budgets \
      [--pilot=experiments/kernel_study/results/pilot]

The main study (``study.py``) copies the chosen epochs into its ``BUDGETS``; a test checks
that they agree with the committed ``budgets.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

from experiments.kernel_study import design, pilot
from hybridconv import run_layout
from hybridconv.studies import records
from hybridconv.training import durations
from hybridconv.training import workdir as workdir_lib

DEFAULT_PILOT = "experiments/kernel_study/results/pilot"
# Robustness evaluation per point at 1,000 and 55,000 images (the suite on 2,000 test images,
# attacks on 500), as the study's earlier versions measured it on this machine.
ROBUSTNESS_SECONDS = 33.0


def read_pilot(root: str) -> dict[int, dict[float, dict[int, list[tuple[int, float]]]]]:
  """size -> epochs -> seed -> validation curve ``[(training images seen, accuracy)]``.

  Only finished runs count; a rung with fewer seeds than the pilot asks for is kept and
  its count shown.
  """
  curves: dict[int, dict[float, dict[int, list[tuple[int, float]]]]] = {}
  for path in records.find_run_dirs([root]):
    run = records.load_run(path)
    if not run.finished:
      continue
    size, epochs = int(run.flat["data.train_size"]), trained_epochs(run)
    steps, accuracy = run.series("val/accuracy")
    seen = [int(step) * int(run.flat["batch_size"]) for step in steps]
    curve = list(zip(seen, (float(a) for a in accuracy), strict=True))
    curves.setdefault(size, {}).setdefault(epochs, {})[int(run.flat["seed"])] = curve
  return curves


def trained_epochs(run: records.RunRecord) -> float:
  """The run's budget in epochs (every pilot point's ``train_for`` is spelt in epochs)."""
  return durations.parse(run.flat["train_for"], "train_for").amount


def choose(final_by_epochs: dict[float, float], tolerance: float) -> float:
  """The shortest budget whose accuracy is within ``tolerance`` (points) of the best one."""
  best = max(final_by_epochs.values())
  return min(e for e, accuracy in final_by_epochs.items() if accuracy >= best - tolerance / 100)


def budgets(curves, tolerance: float = pilot.TOLERANCE) -> dict[int, dict]:
  """The rule applied to every size whose ladder has finished: size -> choice and evidence."""
  chosen = {}
  for size, by_epochs in sorted(curves.items()):
    if set(by_epochs) != set(pilot.LADDERS[size]):
      continue  # the ladder is not complete: no choice yet
    final = {
      epochs: statistics.fmean(curve[-1][1] for curve in seeds.values())
      for epochs, seeds in by_epochs.items()
    }
    epochs = choose(final, tolerance)
    chosen[size] = {
      "epochs": epochs,
      "batch_size": design.BATCH_SIZES[size],
      "at_longest_rung": epochs == max(final),
      "final_validation_accuracy": {str(e): round(a, 5) for e, a in sorted(final.items())},
      "seeds": {str(e): sorted(s) for e, s in sorted(by_epochs.items())},
    }
  return chosen


def point_seconds(root: str, size: int, epochs: float) -> float | None:
  """Median wall time (runner's records) of the pilot's points at ``size`` and ``epochs``."""
  walls = []
  for path in records.find_run_dirs([root]):
    run = records.load_run(path)
    if int(run.flat["data.train_size"]) == size and trained_epochs(run) == epochs:
      times = workdir_lib.read_json(os.path.join(path, run_layout.TIMES_FILE)) or {}
      walls.append(sum(a["wall_seconds"] for a in times.get("train", [])))
  return statistics.median(walls) if walls else None


def plan_rows(root: str, chosen: dict[int, dict]) -> list[dict]:
  """The main study's points per size with the pilot's measured wall time per point."""
  from experiments.kernel_study import study  # noqa: PLC0415

  rows = []
  for size in study.SIZES:
    if size not in chosen:
      continue
    arms = len(study.arms_at(size))
    if size == design.ALL_IMAGES and study.LARGEST_SIZE_EXTRA_ARM is None:
      arms += 1  # the arm chosen from the 10,000-image runs
    points = arms * study.SEEDS[size]
    seconds = point_seconds(root, size, chosen[size]["epochs"])
    robustness = ROBUSTNESS_SECONDS if size in design.ROBUSTNESS_SIZES else 0.0
    total = None if seconds is None else points * (seconds + robustness)
    rows.append(
      {"size": size, "points": points, "seconds": seconds, "robustness": robustness, "total": total}
    )
  return rows


def markdown(chosen: dict[int, dict], tolerance: float, plan: list[dict] = ()) -> str:
  lines = [
    "# Kernel study: budget pilot",
    "",
    "The free arm on a doubling ladder of epochs per training size (`pilot.py`), evaluated on "
    f"the {design.VALIDATION_IMAGES:,}-image validation split held out of the training images "
    "(the test split is not read to choose anything). Rule: the shortest rung whose final "
    f"validation accuracy (mean over the pilot's seeds) is within {tolerance} points of the best "
    "rung of its size. Every arm of the main study gets its size's budget.",
    "",
    "| training images | batch | epochs on the ladder: final validation accuracy (%) | chosen |",
    "| ---: | ---: | --- | ---: |",
  ]
  for size, choice in sorted(chosen.items()):
    ladder = ", ".join(
      f"{float(e):g}: {100 * a:.2f} (n={len(choice['seeds'][e])})"
      for e, a in choice["final_validation_accuracy"].items()
    )
    flag = " (longest rung: may still rise)" if choice["at_longest_rung"] else ""
    lines.append(
      f"| {size:,} | {choice['batch_size']} | {ladder} | {choice['epochs']:g} epochs{flag} |"
    )
  if plan:
    lines += [
      "",
      "## Plan of the main study",
      "",
      "Points per size (arms x paired seeds of `study.py`) at the chosen budget, with the wall "
      "time of the pilot's free-arm point at that budget (training, compilation, the 8 "
      "validation and one test evaluation, checkpoints; one point at a time on this 2-core "
      f"CPU) and, at 1,000 and 55,000 images, about {ROBUSTNESS_SECONDS:.0f} s of robustness "
      "evaluation per point (the earlier versions' measurement of the same suite).",
      "",
      "| training images | points | wall per point (s) | + robustness (s) | total (h) |",
      "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in plan:
      seconds = "" if row["seconds"] is None else f"{row['seconds']:.0f}"
      total = "" if row["total"] is None else f"{row['total'] / 3600:.1f}"
      lines.append(
        f"| {row['size']:,} | {row['points']} | {seconds} | {row['robustness']:.0f} | {total} |"
      )
    known = [row["total"] for row in plan if row["total"] is not None]
    lines.append(f"| all | {sum(r['points'] for r in plan)} | | | {sum(known) / 3600:.1f} |")
  lines += [
    "",
    "![validation curves](pilot_curves.png)",
    "",
    "Regenerate: `.venv/bin/python -m experiments.kernel_study.budgets` (after `hybridconv study "
    "--config=experiments/kernel_study/pilot.py --workdir=experiments/kernel_study/results/pilot`"
    "; 2-core CPU, Fashion-MNIST from Debian's dataset-fashion-mnist).",
    "",
  ]
  return "\n".join(lines)


def plot(curves, path: str) -> None:
  import matplotlib  # noqa: PLC0415 (only the figure needs it)

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  sizes = sorted(curves)
  figure, axes = plt.subplots(1, len(sizes), figsize=(4 * len(sizes), 3.4), squeeze=False)
  for axis, size in zip(axes[0], sizes, strict=True):
    for epochs, seeds in sorted(curves[size].items()):
      for index, (_, curve) in enumerate(sorted(seeds.items())):
        images, accuracy = zip(*curve, strict=True)
        axis.plot(
          images,
          [100 * a for a in accuracy],
          marker="o",
          markersize=2.5,
          color=plt.cm.viridis(
            list(pilot.LADDERS[size]).index(epochs) / max(1, len(pilot.LADDERS[size]) - 1)
          ),
          alpha=1.0 if index == 0 else 0.5,
          label=f"{epochs:g} epochs" if index == 0 else None,
        )
    axis.set_xscale("log")
    axis.set_title(f"{size:,} training images")
    axis.set_xlabel("training images seen")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
  axes[0][0].set_ylabel("validation accuracy (%)")
  figure.suptitle("free arm, budget pilot (2-core CPU; experiments/kernel_study/budgets.py)")
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  plt.close(figure)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--pilot", default=DEFAULT_PILOT, help="the pilot study's workdir")
  args = parser.parse_args(argv)
  if not os.path.isdir(args.pilot):
    print(
      f"error: --pilot={args.pilot!r} is not a directory (run the pilot study first)",
      file=sys.stderr,
    )
    return 2
  curves = read_pilot(args.pilot)
  chosen = budgets(curves)
  with open(os.path.join(args.pilot, "budgets.json"), "w", encoding="utf-8") as f:
    json.dump({str(k): v for k, v in chosen.items()}, f, indent=2)
    f.write("\n")
  with open(os.path.join(args.pilot, "PILOT.md"), "w", encoding="utf-8") as f:
    f.write(markdown(chosen, pilot.TOLERANCE, plan_rows(args.pilot, chosen)))
  if curves:
    plot(curves, os.path.join(args.pilot, "pilot_curves.png"))
  for size, choice in chosen.items():
    print(f"{size} images: {choice['epochs']:g} epochs  {choice['final_validation_accuracy']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
