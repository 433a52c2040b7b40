"""Wall time of the first study in docs/studies.md, cold and warm, at one or more --jobs.

The first study there (3 first layers x 2 seeds on 200 Fashion-MNIST images, 40 steps each,
default cadence: ten evaluations on the validation split, four checkpoints, five filter
summaries, the test split at the end) is what a researcher runs first, so its wall time,
start-up included, is the figure that matters. The command is read from the document itself
(its first ``hybridconv study`` line), so the figure is always that of the command as written;
only ``--workdir`` and ``--jobs`` are replaced. Each setting runs twice through the real
``hybridconv study`` command: *cold* with an empty compilation cache (a fresh machine) and
*warm* with the cache the cold run filled (every later study). Each run writes a new study
root, so nothing is resumed. Printed: wall seconds per run and the ratio to the first --jobs.

    .venv/bin/python experiments/benchmarks/first_study.py [--jobs 2 1]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(REPO, "docs", "studies.md")


def documented_first_study(path: str = DOC) -> list[str]:
  """The arguments of the first ``hybridconv study`` command in ``path``, less ``--workdir``:
  the benchmark times the study as documented, whatever the document says."""
  with open(path, encoding="utf-8") as f:
    text = f.read().replace("\\\n", " ")
  line = next(line for line in text.splitlines() if line.startswith("hybridconv study "))
  words = shlex.split(line)[2:]
  return [word for word in words if not word.startswith("--workdir=")]


def run_study(arguments: list[str], root: str, cache: str, jobs: int) -> float:
  """Runs the first study into ``root`` with ``cache`` as XLA's cache; its wall seconds."""
  env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache}
  command = [sys.executable, "-m", "hybridconv.cli", "study", f"--workdir={root}", *arguments]
  command = [word for word in command if not word.startswith("--jobs=")] + [f"--jobs={jobs}"]
  start = time.perf_counter()
  done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
  seconds = time.perf_counter() - start
  if done.returncode != 0:
    raise SystemExit(f"error: the study failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
  return seconds


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--jobs", type=int, nargs="+", default=[2, 1], help="points at a time")
  args = parser.parse_args(argv)
  arguments = documented_first_study()
  print(f"machine: {os.cpu_count()} cores; study: hybridconv study {shlex.join(arguments)}")
  results = {}
  with tempfile.TemporaryDirectory() as scratch:
    for jobs in args.jobs:
      cache = os.path.join(scratch, f"cache-jobs{jobs}")
      for temperature in ("cold", "warm"):
        root = os.path.join(scratch, f"study-jobs{jobs}-{temperature}")
        seconds = run_study(arguments, root, cache, jobs)
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
