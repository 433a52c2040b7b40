"""Wall time of ``hybridconv evaluate`` (default suite) on a briefly trained SimpleCNN, on CPU.

Trains SimpleCNN with the hybrid first layer on Fashion-MNIST for ``--steps``
steps (``configs/fashion_mnist.py:hybrid``, tracking off), then runs the
default suite -- clean, Gaussian noise x5, blur x4, contrast x3 on the 10,000
test images; FGSM x4 and PGD-10 x4 on the 2,000-image attack subset -- as the
user would: ``hybridconv evaluate --workdir DIR`` in a fresh process, with the
persistent compilation cache off so compilation is counted. Prints the
command's wall time and CPU time (CPU seconds / cores: the wall time it would
take on this machine idle), the evaluation's own time per family (from
``robustness.json``), the goal of 60 s and the ratios to it, the load
average before and after (the machine may be shared), and the suite's
steady-state floor: its forward and input-gradient passes at the speed the
evaluation's own programs reach on full batches (:func:`steady_state_floor`),
which no implementation of the same suite on this machine can beat by much.

    .venv/bin/python experiments/benchmarks/robustness_benchmark.py [--steps 300] [--rounds 2] \
        [--also '--pgd-images=1000 --test-images=5000']
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOAL_SECONDS = 60.0


def _child_cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def _cli(*args: str, cache: bool = True) -> tuple[float, float, subprocess.CompletedProcess]:
  """``(wall seconds, CPU seconds, result)`` of one ``hybridconv`` command in a fresh process."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  if not cache:
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
  start, cpu_start = time.perf_counter(), _child_cpu_seconds()
  result = subprocess.run(
    [sys.executable, "-m", "hybridconv.cli", *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
  )
  seconds, cpu = time.perf_counter() - start, _child_cpu_seconds() - cpu_start
  if result.returncode:
    raise SystemExit(f"hybridconv {args[0]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
  return seconds, cpu, result


def steady_state_floor(workdir: str, results: dict, repeats: int = 3) -> dict[str, float]:
  """The suite's arithmetic at its own steady-state speed: a lower bound on its wall time.

  Times, on full batches of the run's ``eval_batch_size``, the evaluation's own
  jitted per-batch programs (compiled first, not timed): the clean one (one
  forward pass) and FGSM's (an input gradient and a forward pass), so
  ``gradient = fgsm - clean``. Every corruption level is one forward pass per
  image, FGSM one gradient and one forward, PGD ``steps`` gradients and one
  forward: the floor is those counts (from ``results``) at those speeds, with
  no start-up, compilation, data handling or partial batches.
  """
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  from hybridconv import sharding  # noqa: PLC0415
  from hybridconv.robustness import evaluate, restore, suites  # noqa: PLC0415

  sharding.configure_cpu_devices(restore.load_run_config(workdir))  # as `hybridconv evaluate`
  config, _, mesh, split, fns, model = evaluate.load_model(workdir)
  size = config.eval_batch_size
  (batch,) = evaluate.shard_batches(split.images[:size], split.labels[:size], size, mesh)
  suite = suites.get_suite(results["suite"])
  seconds = {}
  for family in (suites.CLEAN, suites.FGSM):
    program = jax.jit(evaluate._family_fn(family, suite, fns))
    args = (model, batch, jnp.float32(2 / 255), jax.random.key(0))
    jax.block_until_ready(program(*args))
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      jax.block_until_ready(program(*args))
      times.append(time.perf_counter() - start)
    seconds[family] = min(times) / size  # per image
  forward, gradient = seconds[suites.CLEAN], max(seconds[suites.FGSM] - seconds[suites.CLEAN], 0.0)
  floor = 0.0
  for entry in results["entries"]:
    per_image = {
      suites.FGSM: gradient + forward,
      suites.PGD: results["pgd_steps"] * gradient + forward,
    }.get(entry["family"], forward)
    floor += entry["num_images"] * per_image
  return {
    "forward_per_s": 1 / forward,
    "gradient_per_s": 1 / max(gradient, 1e-12),
    "floor_s": floor,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=300, help="training steps before evaluating")
  parser.add_argument("--rounds", type=int, default=2, help="timed evaluations")
  parser.add_argument("--workdir", default="", help="reuse this trained run ('' = train one)")
  parser.add_argument(
    "--also",
    action="append",
    default=[],
    help="also time `evaluate` with these extra flags, e.g. '--pgd-images=1000 --test-images=5000'"
    " (repeatable); printed beside the default suite with the ratio",
  )
  args = parser.parse_args()
  print(f"cores: {len(os.sched_getaffinity(0))}, load average before: {os.getloadavg()}")
  workdir = args.workdir or tempfile.mkdtemp(prefix="robustness_benchmark_")
  if not args.workdir:
    seconds, _, _ = _cli(
      "train",
      "--config=configs/fashion_mnist.py:hybrid",
      f"--workdir={workdir}",
      f"--config.train_for={args.steps}steps",
      "--config.tracking.wandb.mode=disabled",
      "--config.tracking.filters_every=never",
      "--config.tracking.animation=False",
    )
    print(f"trained {args.steps} steps in {seconds:.1f} s: {workdir}")
  cores = len(os.sched_getaffinity(0))
  walls, cpus = [], []
  for round_ in range(args.rounds):
    wall, cpu, _ = _cli("evaluate", f"--workdir={workdir}", cache=False)
    with open(os.path.join(workdir, "robustness.json"), encoding="utf-8") as f:
      results = json.load(f)
    walls.append(wall)
    cpus.append(cpu)
    print(
      f"round {round_ + 1}: command {wall:.1f} s wall, {cpu:.1f} CPU s, evaluate_workdir "
      f"{results['seconds']['total']:.1f} s; "
      + ", ".join(f"{k} {v:.1f}" for k, v in results["seconds"].items() if k != "total")
    )
  print(
    "summary (mean accuracy over levels): "
    + ", ".join(f"{k} {v:.4f}" for k, v in results["summary"].items())
  )
  wall, cpu = statistics.median(walls), statistics.median(cpus)
  # On a shared machine the wall time measures the other users too; CPU seconds spread
  # over this machine's cores is what the command costs on it when idle (a lower bound).
  print(
    f"median over {len(walls)} rounds: {wall:.1f} s wall (goal < {GOAL_SECONDS:.0f} s, "
    f"ratio {wall / GOAL_SECONDS:.2f}); {cpu:.1f} CPU s = {cpu / cores:.1f} s on {cores} "
    f"idle cores (ratio {cpu / cores / GOAL_SECONDS:.2f}); load average after: "
    f"{os.getloadavg()}"
  )
  floor = steady_state_floor(workdir, results)
  print(
    f"steady state on full batches: {floor['forward_per_s']:,.0f} forward img/s, "
    f"{floor['gradient_per_s']:,.0f} input-gradient img/s -> the suite's arithmetic alone takes "
    f"{floor['floor_s']:.1f} s (floor/goal {floor['floor_s'] / GOAL_SECONDS:.2f}; "
    f"measured/floor {wall / floor['floor_s']:.2f})"
  )
  for flags in args.also:  # side by side with the default suite, on the same trained run
    timed = [
      _cli("evaluate", f"--workdir={workdir}", *flags.split(), cache=False)[0]
      for _ in range(args.rounds)
    ]
    also_wall = statistics.median(timed)
    print(
      f"with {flags}: median {also_wall:.1f} s wall, {also_wall / wall:.2f} of the default "
      f"suite's (ratio to goal {also_wall / GOAL_SECONDS:.2f})"
    )


if __name__ == "__main__":
  main()
