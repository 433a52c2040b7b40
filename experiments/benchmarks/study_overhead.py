"""Start-up cost of a study point: process per point or worker, with and without the cache.

A point trained in a process of its own (``--one_process_per_point``: a fresh
worker per point) imports JAX and compiles its programs; the runner's default
worker (one per slot) imports once and runs its points one after another. This
runs the same short arm (the tiny gratings config, one point per seed) three
times through the real study runner: a process per point with JAX's persistent
compilation cache off, a process per point with the shared cache, and the
default (workers, shared cache). A point's *overhead* is its wall time (process
or worker request) as the runner records it in ``point_times.json``, minus the
time spent in training steps (``train_seconds`` in its ``summary.json``):
imports, data, compilation, evaluation, checkpoints. The runner's own start-up
(once per study) is not a point's cost and is not counted. The first point of
the cached run fills the cache; the second and later points show what a study
pays per point (goal: <= 3 s).

    .venv/bin/python experiments/benchmarks/study_overhead.py [--points 4] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from hybridconv.studies import runner

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "configs/tiny.py:free"


def run_points(
  root: str, seeds: list[int], steps: int, cache: bool, one_process: bool
) -> list[dict]:
  """Runs one study of one point per seed; per-point wall (the runner's record) and train s."""
  env = dict(os.environ)
  for key in ("JAX_COMPILATION_CACHE_DIR", "JAX_ENABLE_COMPILATION_CACHE"):
    env.pop(key, None)
  if not cache:
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
  subprocess.run(
    [
      sys.executable,
      "-m",
      "hybridconv.studies.command",
      f"--config={CONFIG}",
      f"--workdir={root}",
      f"--config.train_for={steps}steps",
      "--config.cpu_devices=1",
      "--grid",
      "seed=" + ",".join(map(str, seeds)),
      "model.first_layer=free",
      *(["--one_process_per_point"] if one_process else []),
    ],
    cwd=REPO,
    env=env,
    check=True,
    capture_output=True,
    text=True,
  )
  results = []
  for seed in seeds:
    name = next(d for d in os.listdir(root) if d.endswith(f"seed={seed}"))
    with open(os.path.join(root, name, "summary.json"), encoding="utf-8") as f:
      train = json.load(f)["train_seconds"]
    with open(os.path.join(root, name, runner.TIMES_FILE), encoding="utf-8") as f:
      (attempt,) = json.load(f)["train"]
    wall = attempt["wall_seconds"]
    results.append({"seed": seed, "wall_s": wall, "train_s": train, "overhead_s": wall - train})
  return results


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--points", type=int, default=4, help="points per arm (seeds)")
  parser.add_argument("--steps", type=int, default=4, help="training steps per point")
  args = parser.parse_args()
  seeds = list(range(args.points))
  load = os.getloadavg()[0]
  table = {}
  modes = {
    "process, no cache": (False, True),
    "process, cache": (True, True),
    "worker, cache": (True, False),
  }
  for label, (cache, one_process) in modes.items():
    with tempfile.TemporaryDirectory() as root:
      table[label] = run_points(root, seeds, args.steps, cache, one_process)
  print(f"load average at start: {load:.1f} on {os.cpu_count()} cores")
  print("wall / overhead s per point")
  print(f"{'point':>5} | " + " | ".join(f"{label:>19}" for label in modes))
  for i in seeds:
    cells = [f"{table[m][i]['wall_s']:>8.1f} / {table[m][i]['overhead_s']:>8.1f}" for m in modes]
    print(f"{i:>5} | " + " | ".join(cells))
  later = {
    label: statistics.median(r["overhead_s"] for r in rows[1:]) for label, rows in table.items()
  }
  base = later["process, no cache"]
  print(
    f"median overhead of points 2..{args.points}: "
    + ", ".join(
      f"{label} {value:.1f} s ({base / max(value, 1e-9):.2f}x)" for label, value in later.items()
    )
    + f"; goal <= 3 s: {'met' if later['worker, cache'] <= 3.0 else 'NOT met'} "
    f"({later['worker, cache']:.1f} s, the runner's default)"
  )


if __name__ == "__main__":
  main()
