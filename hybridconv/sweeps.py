r"""Sweeps declared in config files: a local runner and a W&B sweep-YAML exporter.

A config file may define ``sweep()``, a generator of override dicts
(``{'model.first_layer': 'gabor', 'seed': 1}``). Each point is the file's
config with those keys changed; nothing else about a sweep is configured.

    # run every point one after the other, each in its own workdir
    python -m hybridconv.sweeps --config=configs/fashion_mnist.py:hybrid --workdir=runs/sweep
    # list the points without running them
    python -m hybridconv.sweeps --config=configs/fashion_mnist.py:hybrid --workdir=runs/sweep \
        --dry_run
    # write a W&B sweep (grid over point indices), then `wandb sweep sweep.yaml`
    python -m hybridconv.sweeps --config=configs/fashion_mnist.py:hybrid --workdir=runs/sweep \
        --wandb_yaml=sweep.yaml

Point ``i`` runs in ``<workdir>/<i:03d>_<overrides>`` as a separate
``python -m hybridconv.main`` process (a crash or an out-of-memory in one point
does not end the sweep), so rerunning the sweep resumes unfinished points from
their checkpoints. The W&B sweep varies only ``point``; each agent run calls
this module with ``--point=i``, so a W&B sweep and a local sweep run exactly the
same commands into the same workdirs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from absl import app, flags

from hybridconv import configlib

RESULTS_FILE = "sweep_results.jsonl"

_CONFIG = flags.DEFINE_string("config", None, "Config file and variant whose sweep() to run.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep root; point i runs in <workdir>/<i>_<name>.")
_POINT = flags.DEFINE_integer("point", -1, "Run only this point index (-1: all).")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "List the points and their commands; run nothing.")
_WANDB_YAML = flags.DEFINE_string("wandb_yaml", "", "Write a W&B sweep YAML here and exit.")


def sweep_points(spec: str) -> list[dict[str, Any]]:
  """The override dicts of the config file's ``sweep()``, each checked against its config."""
  module, variant = configlib.load_config_module(spec)
  if not hasattr(module, "sweep"):
    raise ValueError(f"--config={spec!r}: the config file defines no sweep() generator")
  config = module.get_config(variant) if variant else module.get_config()
  config.lock()
  points = [dict(point) for point in module.sweep()]
  if not points:
    raise ValueError(f"--config={spec!r}: sweep() yielded no points")
  for point in points:
    configlib.apply_overrides(config, point)  # raises on unknown keys before anything runs
  return points


def point_name(index: int, overrides: Mapping[str, Any]) -> str:
  """``'003_first_layer=gabor,seed=1'``: index first (unique, sorted), then short key=value."""
  parts = [f"{key.split('.')[-1]}={value}" for key, value in overrides.items()]
  return f"{index:03d}_" + re.sub(r"[^A-Za-z0-9_.,=+-]", "-", ",".join(parts))[:120]


def _flag_value(value: Any) -> str:
  # config_flags takes str fields verbatim and parses other types as Python literals.
  return value if isinstance(value, str) else repr(value)


def point_command(spec: str, workdir: str, overrides: Mapping[str, Any]) -> list[str]:
  """The ``python -m hybridconv.main`` command line of one point."""
  return [sys.executable, "-m", "hybridconv.main", f"--config={spec}", f"--workdir={workdir}",
          *(f"--config.{key}={_flag_value(value)}" for key, value in overrides.items())]


def _final_eval(workdir: str) -> dict[str, float]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    evals = [e for e in map(json.loads, filter(str.strip, f)) if "eval/accuracy" in e]
  return evals[-1] if evals else {}


def run_points(spec: str, root: str, indices: Iterable[int], points: list[dict]) -> int:
  """Runs the chosen points in order; returns the number that failed."""
  failed = 0
  os.makedirs(root, exist_ok=True)
  for index in indices:
    workdir = os.path.join(root, point_name(index, points[index]))
    command = point_command(spec, workdir, points[index])
    print(f"[sweep] point {index}: {' '.join(command[1:])}", flush=True)
    code = subprocess.call(command)
    result = {"point": index, "workdir": workdir, "overrides": points[index], "exit_code": code,
              **_final_eval(workdir)}
    with open(os.path.join(root, RESULTS_FILE), "a", encoding="utf-8") as f:
      f.write(json.dumps(result) + "\n")
    failed += code != 0
    print(f"[sweep] point {index} exit {code} eval/accuracy "
          f"{result.get('eval/accuracy', float('nan')):.4f}", flush=True)
  return failed


def wandb_sweep_yaml(spec: str, root: str, points: list[dict]) -> str:
  """A W&B grid sweep over the point indices whose runs call ``--point=i``."""
  import yaml  # noqa: PLC0415

  sweep = {
      "name": os.path.splitext(os.path.basename(spec.partition(":")[0]))[0]
              + (f"-{spec.partition(':')[2]}" if ":" in spec else ""),
      "method": "grid",
      "metric": {"name": "eval/accuracy", "goal": "maximize"},
      "parameters": {"point": {"values": list(range(len(points)))}},
      "command": ["${env}", "${interpreter}", "-m", "hybridconv.sweeps", f"--config={spec}",
                  f"--workdir={root}", "${args}"],
      "description": "points: " + json.dumps(points),
  }
  return yaml.safe_dump(sweep, sort_keys=False)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  spec, root = _CONFIG.value, os.path.abspath(_WORKDIR.value)
  try:
    points = sweep_points(spec)
  except ValueError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  if _WANDB_YAML.value:
    with open(_WANDB_YAML.value, "w", encoding="utf-8") as f:
      f.write(wandb_sweep_yaml(spec, root, points))
    print(f"wrote {_WANDB_YAML.value} ({len(points)} points); start it with "
          f"`wandb sweep {_WANDB_YAML.value}` and `wandb agent <sweep id>`")
    return
  if _POINT.value >= len(points):
    print(f"error: --point={_POINT.value} but the sweep has {len(points)} points "
          f"(0..{len(points) - 1})", file=sys.stderr)
    sys.exit(2)
  indices = range(len(points)) if _POINT.value < 0 else [_POINT.value]
  if _DRY_RUN.value:
    for index in indices:
      workdir = os.path.join(root, point_name(index, points[index]))
      print(" ".join(point_command(spec, workdir, points[index])[1:]))
    return
  failed = run_points(spec, root, indices, points)
  print(f"[sweep] {len(indices) - failed} of {len(indices)} points finished; "
        f"results in {os.path.join(root, RESULTS_FILE)}")
  sys.exit(1 if failed else 0)


def run() -> None:
  """Entry point for ``hybridconv sweep`` and ``python -m hybridconv.sweeps``."""
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)


if __name__ == "__main__":
  run()
