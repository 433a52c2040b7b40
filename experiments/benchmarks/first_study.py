"""Wall time of the first study in docs/studies.md, cold and warm, one or two points at a time.

The study (3 first layers x 2 seeds on 200 Fashion-MNIST images, 40 steps each, default
cadence: ten evaluations on a 5,000-image validation split, four checkpoints, five filter
summaries, the test split at the end) is what a researcher runs first, so its wall time,
start-up included, is the figure that matters. Each setting runs twice through the real
``hybridconv study`` command: *cold* with an empty compilation cache (a fresh machine) and
*warm* with the cache the cold run filled (every later study). Each run writes a new study
root, so nothing is resumed. Printed: wall seconds per run and the ratio to one point at a time.

    .venv/bin/python experiments/benchmarks/first_study.py [--jobs 1 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The documented first study (docs/studies.md), less its --workdir.
FIRST_STUDY = [
  "--config=configs/fashion_mnist.py:free",
  "--grid",
  "model.first_layer=free,gabor,random",
  "--grid",
  "seed=0,1",
  "--config.data.train_size=200",
  "--config.batch_size=200",
  "--config.train_for=40epochs",
  "--config.data.validation_size=5000",
]


def run_study(root: str, cache: str, jobs: int) -> float:
  """Runs the first study into ``root`` with ``cache`` as XLA's cache; its wall seconds."""
  env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache}
  command = [sys.executable, "-m", "hybridconv.cli", "study", f"--workdir={root}", *FIRST_STUDY]
  if jobs > 1:
    command.append(f"--jobs={jobs}")
  start = time.perf_counter()
  done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
  seconds = time.perf_counter() - start
  if done.returncode != 0:
    raise SystemExit(f"error: the study failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
  return seconds


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="points at a time")
  args = parser.parse_args(argv)
  print(f"machine: {os.cpu_count()} cores; {sys.platform}; study: {' '.join(FIRST_STUDY)}")
  results = {}
  with tempfile.TemporaryDirectory() as scratch:
    for jobs in args.jobs:
      cache = os.path.join(scratch, f"cache-jobs{jobs}")
      for temperature in ("cold", "warm"):
        root = os.path.join(scratch, f"study-jobs{jobs}-{temperature}")
        seconds = run_study(root, cache, jobs)
        results[jobs, temperature] = seconds
        print(f"--jobs={jobs} {temperature}: {seconds:6.1f} s", flush=True)
  base = args.jobs[0]
  for jobs in args.jobs[1:]:
    for temperature in ("cold", "warm"):
      ratio = results[base, temperature] / results[jobs, temperature]
      print(f"{temperature}: --jobs={jobs} is {ratio:.2f}x the speed of --jobs={base}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
