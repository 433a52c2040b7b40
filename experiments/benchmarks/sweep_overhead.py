"""Start-up cost of a sweep point, without and with the shared compilation cache.

Every point of a study is a new ``python -m hybridconv.main`` process that
imports JAX and compiles its programs. This runs the same short arm (the tiny
gratings config, one point per seed) twice through the real sweep runner:
once with JAX's persistent compilation cache off, once with the runner's
shared cache (``<root>/.jax_cache``). A point's *overhead* is the wall time of
its process, as the runner records it in ``sweep_times.json``, minus the time
spent in training steps (``train_seconds`` in its ``summary.json``): imports,
data, compilation, evaluation, checkpoints. The runner's own start-up (once per
study) is not a point's cost and is not counted. The
first point of the cached run fills the cache; the second and later points
show what a study pays per point (goal: <= 3 s).

    .venv/bin/python experiments/benchmarks/sweep_overhead.py [--points 4] [--steps 4]
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


def run_points(root: str, seeds: list[int], steps: int, cache: bool) -> list[dict]:
  """Runs one sweep of one point per seed; per-point wall (the runner's record) and train s."""
  env = dict(os.environ)
  for key in ("JAX_COMPILATION_CACHE_DIR", "JAX_ENABLE_COMPILATION_CACHE"):
    env.pop(key, None)
  if not cache:
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
  subprocess.run(
    [
      sys.executable,
      "-m",
      "hybridconv.sweeps",
      f"--config={CONFIG}",
      f"--workdir={root}",
      f"--config.num_train_steps={steps}",
      "--config.cpu_devices=1",
      "--grid",
      "seed=" + ",".join(map(str, seeds)),
      "model.first_layer=free",
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
  for label, cache in (("no cache", False), ("shared cache", True)):
    with tempfile.TemporaryDirectory() as root:
      table[label] = run_points(root, seeds, args.steps, cache)
  print(f"load average at start: {load:.1f} on {os.cpu_count()} cores")
  print(
    f"{'point':>5} | {'no cache: wall / overhead s':>28} | {'shared cache: wall / overhead s':>32}"
  )
  for i in seeds:
    a, b = table["no cache"][i], table["shared cache"][i]
    print(
      f"{i:>5} | {a['wall_s']:>13.1f} / {a['overhead_s']:>12.1f} | "
      f"{b['wall_s']:>15.1f} / {b['overhead_s']:>14.1f}"
    )
  later = {
    label: statistics.median(r["overhead_s"] for r in rows[1:]) for label, rows in table.items()
  }
  print(
    f"median overhead of points 2..{args.points}: no cache {later['no cache']:.1f} s, "
    f"shared cache {later['shared cache']:.1f} s "
    f"(ratio {later['no cache'] / max(later['shared cache'], 1e-9):.2f}x; goal <= 3 s)"
  )


if __name__ == "__main__":
  main()
