"""``hybridconv study --executor=slurm``: a study's unfinished points as one SLURM job array.

Submission (:func:`submit`) checks everything first -- the points (as the local runner
does), the flags, ``sbatch`` on PATH, the partition against ``sinfo`` -- then hands the
points to submitit's ``map_array``: one array task per point, at most
``max_running`` at once. It returns at once; ``hybridconv study --status`` reads the
array's state from ``squeue`` and the points' own records (never ``sacct``, which needs
SLURM's accounting database).

Each array task (:class:`PointTask`) trains its point in the task's process exactly as
the local runner's worker does (:func:`hybridconv.studies.runner.run_point_here`): the
same resolved config (handed to the task as a Python literal: the config file was
executed once, at submission), workdir, lock, exit statuses, records, robustness
evaluation and ``points.csv`` row, so ``hybridconv compare`` reads the root unchanged.

Resubmission and preemption: a resubmitted study queues only the points that have not
finished and are not queued or running already. A point stopped by SIGTERM
(``scancel``, a preemption) saves a checkpoint and resumes from it when resubmitted;
one stopped by the array's warning signal (SIGUSR2, ``--signal=USR2@90``: 90 s before
the time limit, or a preemption that warns) saves a checkpoint and requeues its own
task, up to :data:`MAX_REQUEUES` times, and the requeued task resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from hybridconv import configlib, run_layout
from hybridconv.studies import grid as grid_lib
from hybridconv.studies import plan as plan_lib
from hybridconv.studies import runner

# The signal SLURM sends the array's tasks before their time limit (``--signal=USR2@90``):
# submitit's choice, which the trainer turns into a checkpoint and a stop.
WARNING_SIGNAL = signal.SIGUSR2
MAX_REQUEUES = 3  # a task requeues itself after the warning signal at most this often
ACTIVE_STATES = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING")
_MEMORY = re.compile(r"^\d+[KMGT]?$")


@dataclasses.dataclass(frozen=True)
class Options:
  """What ``sbatch`` is asked for, per array task (one point each)."""

  partition: str = ""  # '' = the cluster's default partition
  time_minutes: int = 60  # time limit of each task
  gpus_per_task: int = 0
  cpus_per_task: int = 0  # 0 = SLURM's default
  mem: str = ""  # memory per task as sbatch writes it ('16G'); '' = the partition's default
  account: str = ""
  sbatch: tuple[str, ...] = ()  # further sbatch options, 'key=value' or 'key'
  max_running: int = 0  # array tasks running at once; 0 = no limit


def check_options(options: Options) -> None:
  """Refuses option values sbatch would refuse later, or misread. Raises ValueError."""
  for name in ("time_minutes", "gpus_per_task", "cpus_per_task", "max_running"):
    value = getattr(options, name)
    if value < (1 if name == "time_minutes" else 0):
      flag = "--slurm_time" if name == "time_minutes" else f"--slurm_{name}"
      raise ValueError(f"{flag}={value} must be >= {1 if name == 'time_minutes' else 0}")
  if options.mem and not _MEMORY.match(options.mem):
    raise ValueError(f"--slurm_mem={options.mem!r} is not a size such as 16G or 4000M")
  extra_parameters(options.sbatch)


def extra_parameters(options: Sequence[str]) -> dict[str, Any]:
  """``--slurm_sbatch`` values (``key=value``, or ``key`` for a switch) as submitit's
  ``additional_parameters``. Raises ValueError on an empty key."""
  parameters: dict[str, Any] = {}
  for option in options:
    key, equals, value = option.removeprefix("--").partition("=")
    if not re.match(r"^[a-z][a-z0-9_-]*$", key):
      raise ValueError(f"--slurm_sbatch={option!r} is not key=value (an sbatch option, no --)")
    parameters[key] = value if equals else True
  return parameters


def executor_parameters(options: Options, name: str, tasks: int) -> dict[str, Any]:
  """submitit ``update_parameters`` arguments of an array of ``tasks`` points."""
  parameters: dict[str, Any] = {
    "job_name": name,
    "time": options.time_minutes,
    "array_parallelism": options.max_running or tasks,
    "signal_delay_s": 90,
  }
  for key in ("partition", "account"):
    if getattr(options, key):
      parameters[key] = getattr(options, key)
  for key in ("gpus_per_task", "cpus_per_task"):
    if getattr(options, key):
      parameters[key] = getattr(options, key)
  extra = extra_parameters(options.sbatch)
  if options.mem:
    extra["mem"] = options.mem
  if extra:
    parameters["additional_parameters"] = extra
  return parameters


def check_cluster(options: Options) -> None:
  """The cluster's side of the checks: client commands on PATH, a controller that answers,
  the partition. Raises ValueError with one line."""
  for program in ("sbatch", "srun", "squeue", "sinfo"):
    if shutil.which(program) is None:
      raise ValueError(
        f"{program} is not on PATH: --executor=slurm submits from a machine with SLURM's "
        "client commands (a login node)"
      )
  done = subprocess.run(
    ["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=60, check=False
  )
  if done.returncode:
    message = (done.stderr.strip().splitlines() or ["no message"])[-1]
    raise ValueError(f"sinfo failed, so nothing was submitted: {message}")
  partitions = sorted(set(done.stdout.split()))
  if options.partition and options.partition not in partitions:
    raise ValueError(
      f"--slurm_partition={options.partition!r} is not a partition of this cluster "
      f"(sinfo lists: {', '.join(partitions) or 'none'})"
    )


def queue_states(job_ids: Sequence[str]) -> dict[str, str] | None:
  """``{task id ('123_4', or '123' for a single job): state}`` from ``squeue`` for the
  jobs still queued or running; None when squeue cannot answer."""
  if not job_ids:
    return {}
  done = subprocess.run(
    ["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(job_ids)],
    capture_output=True,
    text=True,
    timeout=60,
    check=False,
  )
  if done.returncode:  # also when every job has left the queue (squeue: 'Invalid job id')
    return {} if "Invalid job id" in done.stderr else None
  return dict(line.split()[:2] for line in done.stdout.splitlines() if line.strip())


def submissions(root: str) -> list[dict[str, Any]]:
  """The study's job arrays, oldest first: ``job_id``, ``points`` (task i runs points[i])."""
  path = os.path.join(root, run_layout.SUBMISSIONS_FILE)
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def point_states(root: str) -> tuple[dict[str, str], bool]:
  """``{point name: SLURM state}`` of the points whose latest task is still queued or
  running, and whether squeue answered."""
  records = submissions(root)
  queue = queue_states([r["job_id"] for r in records])
  if queue is None:
    return {}, False
  states: dict[str, str] = {}
  for record in records:  # later submissions overwrite earlier ones
    for task, name in enumerate(record["points"]):
      task_id = f"{record['job_id']}_{task}" if record["array"] else record["job_id"]
      if task_id in queue:
        states[name] = queue[task_id]
  return states, True


@dataclasses.dataclass(frozen=True)
class Submission:
  """What :func:`submit` did: the array's job id ('' when nothing was submitted)."""

  job_id: str
  names: tuple[str, ...]  # the points submitted, task i running names[i]
  finished: int  # points skipped because they have finished
  active: tuple[str, ...]  # points skipped because a task of theirs is queued or running
  log: str = ""  # the first task's stdout log; '<task>' where the task number goes


def submit(
  study: plan_lib.Study, root: str, indices: Sequence[int], options: Options
) -> Submission:
  """Submits the points of ``study`` among ``indices`` that are neither finished nor queued
  as one job array (nothing when none is left). Checks the cluster and options first.

  Raises:
    ValueError: a check failed, or sbatch refused the array (nothing was queued).
  """
  import submitit  # noqa: PLC0415

  check_options(options)
  check_cluster(options)
  root = os.path.abspath(root)
  names = study.names
  active, _ = point_states(root)
  finished = [i for i in indices if runner.is_finished(os.path.join(root, names[i]))]
  queued = [i for i in indices if names[i] in active and i not in finished]
  chosen = [i for i in indices if i not in finished and i not in queued]
  skipped = {"finished": len(finished), "active": tuple(names[i] for i in queued)}
  if not chosen:
    return Submission("", (), **skipped)
  os.makedirs(root, exist_ok=True)
  plan_lib.write_plan(root, study)
  folder = os.path.join(root, run_layout.SLURM_DIR)
  executor = submitit.SlurmExecutor(folder=folder)
  executor.update_parameters(**executor_parameters(options, study.name, len(chosen)))
  task = PointTask(root, study.points, os.getcwd())
  # Each task's pickle holds its own point's config only: a study's configs together
  # would be written once per task.
  configs = [study.configs[i] for i in chosen]
  try:
    with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's refusal there
      jobs = executor.map_array(task, chosen, configs)
  except submitit.core.utils.FailedJobError as error:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    raise ValueError(f"sbatch refused the job array: {(lines or ['?'])[-1]}") from error
  job_id = jobs[0].job_id.partition("_")[0]
  record = {
    "job_id": job_id,
    "array": len(chosen) > 1,
    "points": [names[i] for i in chosen],
    "submitted": datetime.datetime.now().isoformat(timespec="seconds"),
  }
  with open(os.path.join(root, run_layout.SUBMISSIONS_FILE), "a", encoding="utf-8") as f:
    f.write(json.dumps(record) + "\n")
  log = str(jobs[0].paths.stdout)
  if record["array"]:
    log = log.replace(f"{jobs[0].job_id}_", f"{job_id}_<task>_", 1)
  return Submission(job_id, tuple(record["points"]), log=log, **skipped)


def status_rows(root: str) -> tuple[list[dict[str, Any]], bool]:
  """One row per point of the study at ``root``: its records' status, and its SLURM state
  while its task is queued or running; whether squeue answered. Rewrites the results file.

  Raises:
    ValueError: ``root`` holds no study (no ``study.json``).
  """
  plan = plan_lib.read_plan(root)
  if not plan:
    raise ValueError(f"--workdir={root} holds no study ({run_layout.PLAN_FILE} not found)")
  points = plan["points"]
  states, answered = point_states(root) if shutil.which("squeue") else ({}, False)
  factors = grid_lib.primary_factors(points)
  rows = []
  for point in points:
    name = plan_lib.point_name(point, factors)
    row = runner.result_row(root, name, point, factors, None)
    row["slurm"] = states.get(name, "")
    rows.append(row)
  with results_lock(root):
    runner.refresh_results(root, points, {})
  return rows, answered


class results_lock:  # noqa: N801 (a context manager used like a function)
  """An exclusive ``flock`` on the study root while a task rewrites ``points.csv``,
  so array tasks that finish together do not interleave their snapshots."""

  def __init__(self, root: str):
    self.root = root

  def __enter__(self):
    self.fd = os.open(self.root, os.O_RDONLY)
    fcntl.flock(self.fd, fcntl.LOCK_EX)
    return self

  def __exit__(self, *exc_info) -> None:
    os.close(self.fd)


def train_here(config: str, workdir: str) -> int:
  """Trains a point from its resolved config (:func:`hybridconv.configlib.to_literal` text)
  in this process as ``hybridconv train`` would; its exit status."""
  from hybridconv.training import command  # noqa: PLC0415

  config = configlib.from_literal(config)
  try:
    command.prepare_process(config)  # before anything starts JAX
  except ValueError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  command.quiet_library_logs()
  return command.run_training(config, workdir)


def evaluate_here(config: str, arguments: list[str]) -> int:
  """A finished point's ``hybridconv evaluate <arguments>`` in this process; its exit status."""
  del config  # the run's own config.json says what the evaluation needs
  from hybridconv.robustness import main as robustness_main  # noqa: PLC0415

  return robustness_main.main(arguments)


class PointFailed(Exception):
  """A point's training ended with a non-zero exit status (the array task fails with it)."""


@dataclasses.dataclass(frozen=True)
class PointTask:
  """An array task: runs point ``index`` of the study from its resolved ``config``
  (pickled by submitit, called in the task)."""

  root: str
  points: tuple[dict[str, Any], ...]  # every point of the study: names, the results file
  cwd: str  # where the study was submitted: relative paths in configs resolve from here

  def __call__(self, index: int, config: str) -> int:
    os.chdir(self.cwd)
    os.environ.update(runner.child_environment(self.root, 0, ""))  # the compilation cache
    points = list(self.points)
    code = runner.run_point_here(
      self.root, points, index, config, train=train_here, evaluate=evaluate_here
    )
    name = plan_lib.point_name(points[index], grid_lib.primary_factors(points))
    with results_lock(self.root):
      runner.refresh_results(self.root, points, {name: code})
    if code == 128 + WARNING_SIGNAL.value and requeue():
      raise SystemExit(code)  # as submitit does after a requeue: no result, the task restarts
    if code:
      raise PointFailed(f"point {name}: exit {code} (see this task's log)")
    return code


def requeue() -> bool:
  """Requeues this array task (it resumes from its checkpoint) unless it has been requeued
  :data:`MAX_REQUEUES` times; whether it was."""
  restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
  array_id, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
  job = f"{array_id}_{task}" if array_id and task else os.environ.get("SLURM_JOB_ID", "")
  if not job or restarts >= MAX_REQUEUES:
    print(f"[study] not requeued ({restarts} requeues so far)", flush=True)
    return False
  subprocess.run(["scontrol", "requeue", job], check=True, timeout=60)
  print(f"[study] requeued task {job} (requeue {restarts + 1} of {MAX_REQUEUES})", flush=True)
  return True
