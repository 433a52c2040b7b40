r"""``hybridconv study``: run a study's points locally, or export them as a W&B sweep.

A study is a config file's ``study()`` (points built with
:func:`hybridconv.studies.grid.product`), a grid on the command line, or both
crossed::

  # every point of the file's study(), one after the other, into one root
  hybridconv study --config=experiments/kernel_study/study.py --workdir=runs/study
  # a grid from the command line, with overrides applied to every point
  hybridconv study --config=configs/fashion_mnist.py:free --workdir=runs/quick \
      --grid model.first_layer=free,gabor,random --grid seed=0,1,2 \
      --config.data.train_size=1000 --config.train_for=5epochs
  # print the complete commands (paste into a shell), run nothing
  hybridconv study ... --dry_run
  # two points at a time; on a multi-GPU host, one GPU per point
  hybridconv study ... --jobs=4 --device_var=CUDA_VISIBLE_DEVICES
  # only the points matching some factor values (what a W&B agent runs)
  hybridconv study ... model.first_layer=gabor seed=1
  # a W&B sweep whose parameters are the factors themselves
  hybridconv study ... --wandb_yaml=sweep.yaml && wandb sweep sweep.yaml
  # the unfinished points as one SLURM job array (returns at once), then its state
  hybridconv study ... --executor=slurm --slurm_partition=gpu --slurm_gpus_per_task=1
  hybridconv study --workdir=runs/study --status

The config file is executed once: every point's complete config (the file's
``get_config``, ``--config.a.b=value`` overrides, the point's values) is
resolved and checked before the first point trains
(:mod:`hybridconv.studies.plan`), and what trains a point receives that config.
Each point runs in ``<workdir>/<factor values>`` (e.g.
``first_layer=gabor,seed=1``), in a worker process per slot that imports JAX
once and trains its points one after another, as ``python -m hybridconv.main``
would (``--one_process_per_point``: a fresh worker each); see
:mod:`hybridconv.studies.runner` for resumption, the results file and the
shared compilation cache. With ``--executor=slurm`` each point is a task of one
SLURM job array instead (:mod:`hybridconv.studies.slurm`). Exit status: 0 all
points finished (or were submitted), 1 some failed, 2 bad input (one ``error:``
line, nothing run or queued).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from absl import app, flags

from hybridconv import compilation_cache, run_layout
from hybridconv.studies import grid as grid_lib
from hybridconv.studies import plan as plan_lib
from hybridconv.studies import runner, slurm

_CONFIG = flags.DEFINE_string("config", None, "Config file (and variant) of every point.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Study root: each point runs in a folder below it.")
_GRID = flags.DEFINE_multi_string(
  "grid", [], "A factor: key=value1,value2,... (repeat for more; crossed with study())."
)
_POINT = flags.DEFINE_integer("point", -1, "Run only the point with this index (-1: all).")
_JOBS = flags.DEFINE_integer(
  "jobs",
  1,
  "Points run at once. Without --device_var each slot's worker runs on its own share of the "
  "CPU cores (so on a CPU, cpu_devices=0 gives each point one device per core of its share).",
)
_DEVICE_VAR = flags.DEFINE_string(
  "device_var",
  "",
  "Give each of the --jobs slots its own device through this variable, "
  "e.g. CUDA_VISIBLE_DEVICES (slot i sees device i).",
)
_ONE_PROCESS = flags.DEFINE_bool(
  "one_process_per_point",
  False,
  "Train each point in a fresh worker process of its own instead of in a worker process "
  "per slot that imports JAX once for all its points.",
)
_DRY_RUN = flags.DEFINE_bool(
  "dry_run", False, "Check every point; print the command that trains each one; run nothing."
)
_WANDB_YAML = flags.DEFINE_string("wandb_yaml", "", "Write a W&B sweep YAML here and exit.")
_EXECUTOR = flags.DEFINE_enum(
  "executor",
  "local",
  ["local", "slurm"],
  "local: run the points here; slurm: submit them as one SLURM job array and return.",
)
_STATUS = flags.DEFINE_bool(
  "status", False, "Print each point's status (and SLURM state) of the study at --workdir; exit."
)
_SLURM_PARTITION = flags.DEFINE_string("slurm_partition", "", "Partition ('': the default).")
_SLURM_TIME = flags.DEFINE_integer("slurm_time", 60, "Time limit of each point's task, minutes.")
_SLURM_GPUS = flags.DEFINE_integer("slurm_gpus_per_task", 0, "GPUs of each point's task.")
_SLURM_CPUS = flags.DEFINE_integer(
  "slurm_cpus_per_task", 0, "CPUs of each point's task (0: SLURM's default)."
)
_SLURM_MEM = flags.DEFINE_string("slurm_mem", "", "Memory of each task, e.g. 16G ('': default).")
_SLURM_ACCOUNT = flags.DEFINE_string("slurm_account", "", "Account to charge ('': default).")
_SLURM_SBATCH = flags.DEFINE_multi_string(
  "slurm_sbatch", [], "A further sbatch option as key=value, e.g. qos=high (repeat for more)."
)
_SLURM_MAX_RUNNING = flags.DEFINE_integer(
  "slurm_max_running", 0, "Array tasks running at once (0: no limit)."
)

# The runner's own flags, listed by `hybridconv study --help` (absl prints only
# these because the module defines no others).
OVERRIDE_PREFIX = "--config."


def split_overrides(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
  """Separates ``--config.a.b=value`` overrides (not absl flags) from the other arguments."""
  rest, overrides = [], {}
  for arg in argv:
    if arg.startswith(OVERRIDE_PREFIX):
      overrides.update(grid_lib.parse_assignments([arg], "override"))
    else:
      rest.append(arg)
  return rest, overrides


def select(points: Sequence[Mapping[str, Any]], selectors: Mapping[str, Any]) -> list[int]:
  """Indices of the points whose values equal every ``key=value`` selector."""
  for key in selectors:
    if not any(key in p for p in points):
      raise ValueError(
        f"selector {key}=... names no factor of the study; factors: "
        f"{grid_lib.factors_of(points) or sorted({k for p in points for k in p})}"
      )
  chosen = [
    i
    for i, p in enumerate(points)
    if all(
      key in p and (p[key] == value or str(p[key]) == str(value))
      for key, value in selectors.items()
    )
  ]
  if not chosen:
    raise ValueError(f"no point of the study has {selectors}")
  return chosen


def wandb_sweep_yaml(
  spec: str, root: str, points: Sequence[Mapping[str, Any]], overrides: Mapping[str, Any]
) -> str:
  """A W&B grid sweep over the factors themselves; each agent run runs one matching point."""
  import yaml  # noqa: PLC0415

  factors = grid_lib.primary_factors(points)
  values = {k: [] for k in factors}
  for point in points:
    for key in factors:
      if point[key] not in values[key]:
        values[key].append(point[key])
  sweep = {
    "name": plan_lib.study_name(spec),
    "method": "grid",
    "metric": {"name": "eval/accuracy", "goal": "maximize"},
    "parameters": {key: {"values": vals} for key, vals in values.items()},
    "command": [
      "${env}",
      "${interpreter}",
      "-m",
      "hybridconv.studies.command",
      f"--config={spec}",
      f"--workdir={root}",
      *(f"{OVERRIDE_PREFIX}{k}={plan_lib.flag_value(v)}" for k, v in overrides.items()),
      "${args_no_hyphens}",
    ],
  }
  if len(points) != len(list(grid_lib.product(values))):
    sweep["description"] = (
      "not a full product: agents skip combinations that are not points "
      "(they exit 2 with 'no point of the study has ...')"
    )
  return yaml.safe_dump(sweep, sort_keys=False)


def slurm_options() -> slurm.Options:
  return slurm.Options(
    partition=_SLURM_PARTITION.value,
    time_minutes=_SLURM_TIME.value,
    gpus_per_task=_SLURM_GPUS.value,
    cpus_per_task=_SLURM_CPUS.value,
    mem=_SLURM_MEM.value,
    account=_SLURM_ACCOUNT.value,
    sbatch=tuple(_SLURM_SBATCH.value),
    max_running=_SLURM_MAX_RUNNING.value,
  )


def print_status(root: str) -> None:
  """``--status``: one line per point (status, SLURM state, final accuracy), then a count."""
  rows, answered = slurm.status_rows(root)
  width = max(len(row["point"]) for row in rows)
  for row in rows:
    state = f" [{row['slurm']}]" if row["slurm"] else ""
    accuracy = row.get("final_eval_accuracy", "")
    accuracy = f"  eval/accuracy {accuracy:.4f}" if isinstance(accuracy, float) else ""
    print(f"{row['point']:<{width}}  {row['status']}{state}{accuracy}")
  finished = sum(row["status"] == "finished" for row in rows)
  queued = sum(bool(row["slurm"]) for row in rows)
  note = "" if answered or not slurm.submissions(root) else " (squeue did not answer)"
  print(f"[study] {finished} of {len(rows)} points finished, {queued} queued or running{note}")


def report_submission(root: str, submission: slurm.Submission, chosen: int) -> None:
  skipped = []
  if submission.finished:
    skipped.append(f"{submission.finished} finished")
  if submission.active:
    skipped.append(f"{len(submission.active)} queued or running already")
  skipped = f" ({', '.join(skipped)}: not submitted)" if skipped else ""
  if not submission.job_id:
    print(f"[study] nothing to submit: none of the {chosen} points is left{skipped}")
    return
  tasks = len(submission.names)
  print(
    f"[study] submitted {tasks} of {chosen} points as SLURM job {submission.job_id} "
    f"({'array tasks 0-' + str(tasks - 1) if tasks > 1 else 'one task'}){skipped}"
  )
  print(f"[study] logs: {submission.log} (.err beside it)")
  print(f"[study] state: hybridconv study --workdir={root} --status")


def main(argv: list[str], overrides: Mapping[str, Any]) -> None:
  root = os.path.abspath(_WORKDIR.value)
  if _STATUS.value and _DRY_RUN.value:  # reading the state changes nothing: say what it reads
    print(f"[study] would print the status of the study at {root}")
    return
  if _STATUS.value:
    try:
      print_status(root)
    except ValueError as error:
      print(f"error: {error}", file=sys.stderr)
      sys.exit(2)
    return
  spec = _CONFIG.value
  try:
    if not spec:
      raise ValueError("--config is required (the config file of every point)")
    selectors = grid_lib.parse_assignments(argv[1:], "selector")
    study = plan_lib.load_study(spec, grid_lib.parse_grid(_GRID.value), overrides)
    points = study.points
    indices = select(points, selectors) if selectors else list(range(len(points)))
    if _POINT.value >= 0:
      if _POINT.value >= len(points):
        raise ValueError(
          f"--point={_POINT.value} but the study has {len(points)} points (0..{len(points) - 1})"
        )
      indices = [_POINT.value]
    if _JOBS.value < 1:
      raise ValueError(f"--jobs={_JOBS.value} must be >= 1")
    if _EXECUTOR.value == "slurm" and not (_WANDB_YAML.value or _DRY_RUN.value):
      submission = slurm.submit(study, root, indices, slurm_options())
  except ValueError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  if _WANDB_YAML.value:
    with open(_WANDB_YAML.value, "w", encoding="utf-8") as f:
      f.write(wandb_sweep_yaml(spec, root, points, overrides))
    print(
      f"wrote {_WANDB_YAML.value} ({len(points)} points); start it with "
      f"`wandb sweep {_WANDB_YAML.value}`, then `wandb agent <sweep id>` on each machine"
    )
    return
  chosen = [points[i] for i in indices]
  if _EXECUTOR.value == "slurm" and not _DRY_RUN.value:
    report_submission(root, submission, len(chosen))
    return
  if _DRY_RUN.value:
    for index in indices:
      print(plan_lib.shell_line(study.command(root, index)))
    return
  try:
    failed = runner.run_study(
      study,
      root,
      indices=indices,
      jobs=_JOBS.value,
      device_var=_DEVICE_VAR.value,
      one_process_per_point=_ONE_PROCESS.value,
    )
  except runner.StudyStopped as stopped:
    print(f"[study] {stopped}", flush=True)
    sys.exit(128 + signal.Signals[stopped.signal_name].value)  # as a shell reports it
  print(
    f"[study] {len(chosen) - failed} of {len(chosen)} points finished; results in "
    f"{os.path.join(root, run_layout.RESULTS_FILE)}"
  )
  sys.exit(1 if failed else 0)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with an unknown flag or a bad flag value as one ``error:`` line, exit 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
    sys.exit(2)


def run() -> None:
  """Entry point for ``hybridconv study`` and ``python -m hybridconv.studies.command``."""
  compilation_cache.enable()  # inherited by every worker and point
  argv, overrides = split_overrides(sys.argv)
  flags.mark_flags_as_required(["workdir"])
  app.run(lambda args: main(args, overrides), argv=argv, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
