"""Runs a study's points in worker processes into one study root, resumably.

Each point trains in ``<root>/<point name>``
(:func:`hybridconv.studies.grid.point_name`) inside a worker process
(:mod:`hybridconv.studies.worker`: one per slot, imports JAX once, replaced
after a point that fails), or with ``one_process_per_point`` in a
``python -m hybridconv.main`` process of its own, so

* a crash or out-of-memory in one point does not end the study;
* running the same study again skips finished points (``summary.json`` says
  ``finished``; committed light records count too) and resumes interrupted
  ones from their checkpoints;
* ``<root>/points.csv`` is rewritten from the points' own records after
  every point: one row per point, never duplicated;
* ``<root>/study.json`` records the spec, factors, overrides and points, which
  ``hybridconv compare`` reads to know the study's factors;
* ``<point>/point_times.json`` keeps the wall time of every process the runner
  started for the point (training attempts, robustness evaluation): what a
  study costs, start-up and evaluation included, which ``train_seconds`` is not.

Start-up cost: a worker imports JAX, Flax, Optax and orbax once for all its
points, and every point traces its programs. Points share the user's
persistent JAX compilation cache (:mod:`hybridconv.compilation_cache`), so
the second and later points of an arm, and every later study, load their
programs instead of compiling them.
"""

from __future__ import annotations

import copy
import csv
import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hybridconv import compilation_cache, configlib
from hybridconv.run_layout import (
  CONFIG_FILE,
  PLAN_FILE,
  RESULTS_FILE,
  ROBUSTNESS_FILE,
  TIMES_FILE,
)
from hybridconv.studies import grid as grid_lib
from hybridconv.studies import records
from hybridconv.training import preemption
from hybridconv.training import workdir as workdir_lib

# Exit statuses of a point stopped by a signal after saving a checkpoint (128 + SIGTERM, SIGINT,
# SIGUSR1 or SIGUSR2: the signals the trainer turns into a checkpoint and a stop).
STOPPED_EXITS = tuple(128 + s.value for s in preemption.PreemptionFlag.SIGNALS)


def flag_value(value: Any) -> str:
  # config_flags takes str fields verbatim and parses other types as Python literals.
  return value if isinstance(value, str) else repr(value)


def load_points(
  spec: str, grid: Mapping[str, Sequence[Any]], overrides: Mapping[str, Any]
) -> list[dict[str, Any]]:
  """The study's points: the config file's ``study()`` (if any) crossed with ``grid``.

  Every point, with ``overrides`` applied first, is checked against the config
  so a misspelt key fails before anything runs.

  Raises:
    ValueError: an unknown key, a file with neither ``study()`` nor a grid.
  """
  module, variant = configlib.load_config_module(spec)
  points = [dict(p) for p in _study_points(module, variant)] if hasattr(module, "study") else []
  if hasattr(module, "study") and not points:
    raise ValueError(f"--config={spec!r}: study() yielded no points")
  if not points and not grid:
    raise ValueError(
      f"--config={spec!r} defines no study() and no --grid was given; "
      "add --grid key=v1,v2 or a study() to the config file"
    )
  points = grid_lib.combine(points, grid)
  factors = grid_lib.primary_factors(points)
  names = [point_name(p, factors) for p in points]
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ValueError(
      f"several points are named {repeated[0]!r} (factors {factors}): the study repeats a "
      "combination; give each factor once, on the command line or in the file's study()"
    )
  base = module.get_config(variant) if variant else module.get_config()
  base.lock()
  configlib.apply_overrides(base, dict(overrides))
  for point in points:  # every point's keys and values, before the first one trains
    config = copy.deepcopy(base)
    configlib.apply_overrides(config, point)
    check_point(config, point_name(point, factors))
  return points


def check_point(config, name: str) -> None:
  """The checks of a point's values that need no devices or data (a bad point k must not
  fail after k - 1 points trained): config values, and the robustness settings it will use."""
  from hybridconv.robustness import suites  # noqa: PLC0415 (imports JAX, as validation does)
  from hybridconv.training import validation  # noqa: PLC0415

  try:
    validation.check_values(config)
    if config.robustness.after_training:
      suites.get_suite(config.robustness.suite)
      for key in ("pgd_images", "test_images"):
        value = config.robustness[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
          raise ValueError(f"config.robustness.{key}={value!r} must be an int >= 0 (0 = all)")
  except ValueError as error:
    raise ValueError(f"point {name}: {error}") from error


def _study_points(module, variant: str | None):
  """``module.study()``, or ``module.study(variant)`` when it takes the config's variant."""
  if variant and inspect.signature(module.study).parameters:
    return module.study(variant)
  return module.study()


def study_name(spec: str) -> str:
  """``'kernel_study'`` from ``'experiments/kernel_study/study.py:main'`` (file + variant)."""
  path, _, variant = spec.partition(":")
  base = os.path.splitext(os.path.basename(path))[0]
  if base in ("study", "config"):
    base = os.path.basename(os.path.dirname(os.path.abspath(path))) or base
  return f"{base}-{variant}" if variant else base


def point_settings(
  point: Mapping[str, Any], *, overrides: Mapping[str, Any], group: str, tags: Sequence[str]
) -> dict[str, Any]:
  """Every config override of one point, in the order they apply."""
  return {
    "tracking.wandb.group": group,
    "tracking.wandb.tags": tuple(tags),
    **overrides,
    **point,
  }


def point_command(
  spec: str,
  workdir: str,
  point: Mapping[str, Any],
  *,
  overrides: Mapping[str, Any],
  group: str,
  tags: Sequence[str],
) -> list[str]:
  """The ``python -m hybridconv.main`` command line of one point."""
  settings = point_settings(point, overrides=overrides, group=group, tags=tags)
  return [
    sys.executable,
    "-m",
    "hybridconv.main",
    f"--config={spec}",
    f"--workdir={workdir}",
    *(f"--config.{key}={flag_value(value)}" for key, value in settings.items()),
  ]


def point_request(
  spec: str,
  root: str,
  points: Sequence[Mapping[str, Any]],
  index: int,
  overrides: Mapping[str, Any],
) -> tuple[str, dict[str, Any]]:
  """Point ``index``'s workdir and every config override it trains with, whatever runs it."""
  factors = grid_lib.primary_factors(points)
  point = points[index]
  workdir = os.path.join(root, point_name(point, factors))
  tags = point_tags(point, factors)
  return workdir, point_settings(point, overrides=overrides, group=study_name(spec), tags=tags)


def shell_line(command: Sequence[str]) -> str:
  """A command as one line that can be pasted into a shell."""
  import shlex  # noqa: PLC0415

  return " ".join(shlex.quote(part) for part in command)


def point_name(point: Mapping[str, Any], factors: Sequence[str]) -> str:
  """The point's folder: its primary factor values (all its values when none vary)."""
  return grid_lib.point_name({k: point[k] for k in factors if k in point} or point)


def point_tags(point: Mapping[str, Any], factors: Sequence[str]) -> list[str]:
  return [f"{key}={point[key]}" for key in factors if key in point][:20]  # W&B allows 64 chars


def is_finished(workdir: str) -> bool:
  """Whether the point's run reached its last step (its ``summary.json`` says so)."""
  summary = workdir_lib.read_summary(workdir)
  return bool(summary and summary.get("finished"))


def child_environment(root: str, slot: int, device_var: str) -> dict[str, str]:
  """The environment of a point: the user's compilation cache; one device per slot if asked."""
  env = dict(os.environ)
  compilation_cache.enable(env)
  if device_var:
    env[device_var] = str(slot)
  cwd = os.getcwd()  # config files import `configs.default` from the working directory
  env["PYTHONPATH"] = cwd + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
  return env


def robustness_arguments(
  workdir: str, *, suite: str, pgd_images: int, test_images: int = 0
) -> list[str]:
  """The ``hybridconv evaluate`` arguments of a finished point."""
  return [
    f"--workdir={workdir}",
    f"--suite={suite}",
    f"--pgd_images={pgd_images}",
    f"--test_images={test_images}",
  ]


def record_time(workdir: str, kind: str, seconds: float, exit_code: int) -> None:
  """Appends one process's wall time to the point's ``point_times.json`` under ``kind``.

  Nothing is written for a point whose process left no workdir (refused before any work).
  """
  if not os.path.isdir(workdir):
    return
  path = os.path.join(workdir, TIMES_FILE)
  times = workdir_lib.read_json(path) or {}
  times.setdefault(kind, []).append({"wall_seconds": round(seconds, 1), "exit": exit_code})
  workdir_lib.write_json(path, times, indent=2)


def _total_seconds(times: Mapping[str, Any], kind: str) -> float | str:
  attempts = times.get(kind) or []
  return round(sum(a["wall_seconds"] for a in attempts), 1) if attempts else ""


def result_row(
  root: str, name: str, point: Mapping[str, Any], factors: Sequence[str], exit_code: int | None
) -> dict[str, Any]:
  """One row of ``points.csv`` from the point's records on disk."""
  workdir = os.path.join(root, name)
  row: dict[str, Any] = {"point": name, "workdir": os.path.relpath(workdir, root)}
  row.update({key: point.get(key, "") for key in factors})
  finished = is_finished(workdir)
  if finished:
    row["status"] = "finished"
  elif exit_code in STOPPED_EXITS:
    row["status"] = f"stopped (exit {exit_code}; resumes from its checkpoint)"
  elif exit_code not in (None, 0):
    row["status"] = f"failed (exit {exit_code})"
  else:
    row["status"] = "started" if os.path.isdir(workdir) else "pending"
  if os.path.isfile(os.path.join(workdir, CONFIG_FILE)):
    run = records.load_run(workdir)
    best, best_step = run.best()
    row.update(
      {
        "final_eval_accuracy": run.final(),
        "final_eval_loss": run.final("eval/loss"),
        "best_eval_accuracy": best,
        "best_step": best_step,
        "steps": (run.summary or {}).get("step", ""),
        "train_seconds": (run.summary or {}).get("train_seconds", ""),
      }
    )
    times = workdir_lib.read_json(os.path.join(workdir, TIMES_FILE)) or {}
    row["wall_seconds"] = _total_seconds(times, "train")
    row["robustness_wall_seconds"] = _total_seconds(times, "robustness")
    for family, value in ((run.robustness or {}).get("summary") or {}).items():
      row[f"robustness_{family}"] = value
  return row


def write_results(root: str, rows: Sequence[Mapping[str, Any]]) -> str:
  """Rewrites ``points.csv`` (atomically) with one row per point."""
  columns: list[str] = []
  for row in rows:
    columns += [c for c in row if c not in columns]
  path = os.path.join(root, RESULTS_FILE)
  temporary = f"{path}.{os.getpid()}.tmp"  # a process's own: SLURM array tasks write it too
  with open(temporary, "w", encoding="utf-8", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
  os.replace(temporary, path)
  return path


def refresh_results(
  root: str, points: Sequence[Mapping[str, Any]], exit_codes: Mapping[str, int | None]
) -> str:
  """Rewrites ``points.csv`` from every point's records (``exit_codes`` by point name:
  the exit statuses this process saw)."""
  factors = grid_lib.primary_factors(points)
  names = [point_name(p, factors) for p in points]
  rows = [
    result_row(root, n, p, factors, exit_codes.get(n)) for n, p in zip(names, points, strict=True)
  ]
  return write_results(root, rows)


def write_plan(
  root: str,
  spec: str,
  points: Sequence[Mapping[str, Any]],
  overrides: Mapping[str, Any],
  factors: Sequence[str],
) -> None:
  """``study.json``: what this root is a study of (read by ``hybridconv compare``)."""
  plan = {
    "spec": spec,
    "name": study_name(spec),
    "factors": list(factors),
    "overrides": dict(overrides),
    "points": [dict(p) for p in points],
  }
  workdir_lib.write_json(os.path.join(root, PLAN_FILE), plan, indent=2, default=repr)


def read_plan(root: str) -> dict[str, Any] | None:
  return workdir_lib.read_json(os.path.join(root, PLAN_FILE))


def _robustness_settings(
  spec: str, overrides: Mapping[str, Any], point: Mapping[str, Any]
) -> tuple[bool, dict[str, Any]]:
  """Whether the point's robustness evaluation is due, and its ``robustness_command`` settings."""
  config = configlib.load_config(spec)
  configlib.apply_overrides(config, {**overrides, **point})
  section = config.robustness
  settings = {
    "suite": section.suite,
    "pgd_images": int(section.pgd_images),
    "test_images": int(section.test_images),
  }
  return bool(section.after_training), settings


class _Process:
  """One point in a process of its own (``one_process_per_point``): the same interface as a
  :class:`worker.Client` serving a single point."""

  def __init__(self, command: list[str], env: dict[str, str]):
    # A session of its own: a Ctrl-C at the terminal reaches the runner only, which
    # forwards exactly one SIGTERM (a second signal would cut the checkpoint short).
    self.process = subprocess.Popen(command, env=env, start_new_session=True)

  def poll(self) -> dict[str, Any] | None:
    code = self.process.poll()
    return None if code is None else {"exit": code}

  def stop(self) -> None:
    if self.process.poll() is None:
      self.process.send_signal(signal.SIGTERM)

  def close(self) -> None:
    self.process.wait()


class StudyStopped(Exception):
  """The runner was stopped by a signal; running points saved checkpoints and stopped."""

  def __init__(self, signal_name: str, finished: int, stopped: int, total: int):
    super().__init__(
      f"stopped by {signal_name}: {stopped} running point(s) saved a checkpoint and stopped, "
      f"{finished} of {total} finished; run the same command to resume"
    )
    self.signal_name = signal_name


class StopSignals(preemption.PreemptionFlag):
  """SIGTERM, SIGINT and SIGHUP to the runner: remember the first, ignore repeats.

  The runner then stops starting points and forwards one SIGTERM to each running
  point (:class:`worker.Client` and :class:`_Process` run in sessions of their own,
  so a terminal's Ctrl-C does not reach them twice). Unlike a training run's flag, a
  second signal changes nothing: the runner is only waiting for its points.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

  def _handle(self, signum, frame) -> None:
    del frame
    self.signal_name = self.signal_name or signal.Signals(signum).name


class _Slots:
  """The slots of one local run of a study: their workers, the points running on them, and
  the exit status of each point that ended.

  Each slot's points run one after another in one worker process
  (:mod:`hybridconv.studies.worker`), which imports JAX once; a worker that a
  point ends or kills is replaced for the next point. With
  ``one_process_per_point`` every point is a ``python -m hybridconv.main``
  process of its own instead.
  """

  def __init__(
    self,
    spec: str,
    root: str,
    points: Sequence[Mapping[str, Any]],
    overrides: Mapping[str, Any],
    *,
    jobs: int,
    device_var: str,
    one_process_per_point: bool,
  ):
    self.spec, self.root, self.points, self.overrides = spec, root, points, overrides
    self.device_var, self.one_process_per_point = device_var, one_process_per_point
    self.factors = grid_lib.primary_factors(points)
    self.names = [point_name(p, self.factors) for p in points]
    self.exit_codes: dict[str, int | None] = {}
    self.running: list[tuple[Any, str, int, float]] = []  # (handle, name, slot, started)
    self.workers: dict = {}  # slot -> worker.Client
    self.free = list(range(max(1, jobs)))
    self.stop = StopSignals()

  def _environment(self, slot: int) -> dict[str, str]:
    return child_environment(self.root, slot, self.device_var)

  def _worker(self, slot: int):
    from hybridconv.studies import worker as worker_lib  # noqa: PLC0415

    if slot not in self.workers:
      self.workers[slot] = worker_lib.Client(self._environment(slot))
      print(f"[study] worker for slot {slot}: pid {self.workers[slot].process.pid}", flush=True)
    return self.workers[slot]

  def _start(self, index: int, slot: int):
    """The point's process: the slot's worker (started if it has none), or a process of its own."""
    workdir, settings = point_request(self.spec, self.root, self.points, index, self.overrides)
    if self.one_process_per_point:
      command = point_command(
        self.spec,
        workdir,
        self.points[index],
        overrides=self.overrides,
        group=study_name(self.spec),
        tags=point_tags(self.points[index], self.factors),
      )
      return _Process(command, self._environment(slot))
    self._worker(slot).send(self.spec, workdir, settings)
    return self.workers[slot]

  def evaluator(self, slot: int):
    """``run(point, arguments) -> exit status``: ``hybridconv evaluate`` on the (idle) slot."""

    def run(point: Mapping[str, Any], arguments: list[str]) -> int:
      if self.one_process_per_point:
        command = [sys.executable, "-m", "hybridconv.cli", "evaluate", *arguments]
        return subprocess.call(command, env=self._environment(slot))
      settings = {**self.overrides, **point}
      while True:
        client = self._worker(slot)
        client.evaluate(self.spec, settings, arguments)
        while (answer := client.poll()) is None:
          time.sleep(0.05)
        self._close_if_done(slot, client, answer)
        if not answer.get("restart"):
          return int(answer["exit"])

    return run

  def _close_if_done(self, slot: int, handle, answer: Mapping[str, Any]) -> None:
    """Closes a point's own process, or a worker that has ended: after a restart answer or a
    request that failed (what failed may have left state behind)."""
    if self.one_process_per_point or answer.get("restart") or answer["exit"]:
      handle.close()
      self.workers.pop(slot, None)

  def start_ready(self, queue: list[int]) -> None:
    """Starts queued points while slots are free; finished ones are skipped (their robustness
    evaluation still runs if due and missing)."""
    while queue and self.free and not self.stop.signal_name:
      index = queue.pop(0)
      name = self.names[index]
      if is_finished(os.path.join(self.root, name)):
        point = self.points[index]
        run = self.evaluator(self.free[0])
        _maybe_evaluate(self.spec, self.root, name, self.overrides, point, run=run)
        continue
      slot = self.free.pop(0)
      print(f"[study] start {name} ({index + 1}/{len(self.points)})", flush=True)
      self.running.append((self._start(index, slot), name, slot, time.time()))

  def collect(self) -> None:
    """Handles every running point that answered: ended, or to be restarted on a new worker."""
    for item in list(self.running):
      handle, name, slot, started = item
      answer = handle.poll()
      if answer is None:
        continue
      self.running.remove(item)
      self._close_if_done(slot, handle, answer)
      if answer.get("restart"):  # the worker cannot take this point: a fresh one will
        if self.stop.signal_name:
          self.free.append(slot)  # not started: nothing to stop
        else:
          index = self.names.index(name)
          self.running.append((self._start(index, slot), name, slot, started))
        continue
      self._finish(name, slot, started, int(answer["exit"]))

  def _finish(self, name: str, slot: int, started: float, code: int) -> None:
    self.exit_codes[name] = code
    self.free.append(slot)
    print(f"[study] {name}: exit {code} after {time.time() - started:.0f} s", flush=True)
    evaluate = None if self.stop.signal_name else self.evaluator(slot)
    point = self.points[self.names.index(name)]
    after_training(self.spec, self.root, name, point, self.overrides, code, started, evaluate)
    refresh_results(self.root, self.points, self.exit_codes)

  def forward_stop(self) -> None:
    """One SIGTERM to each running point (a second would cut its checkpoint short)."""
    for handle, *_ in self.running:
      handle.stop()

  def close(self) -> None:
    for client in self.workers.values():
      client.close()


def run_study(
  spec: str,
  root: str,
  points: Sequence[Mapping[str, Any]],
  *,
  indices: Sequence[int] | None = None,
  overrides: Mapping[str, Any] | None = None,
  jobs: int = 1,
  device_var: str = "",
  one_process_per_point: bool = False,
) -> int:
  """Runs the unfinished points among ``indices`` (all by default), ``jobs`` at a time
  (:class:`_Slots`: a worker process per slot, or ``one_process_per_point``).

  Returns how many failed. SIGTERM, SIGINT or SIGHUP stop the study: no new point
  starts, each running point gets one SIGTERM (it saves a checkpoint and stops), and
  :class:`StudyStopped` is raised once they have; a rerun resumes them. Finished
  points are skipped (their robustness evaluation still runs if it is due and
  missing). Names and the results file cover all ``points``, so running a few of
  them (a W&B agent) writes into the same folders as running the whole study.
  """
  overrides = dict(overrides or {})
  root = os.path.abspath(root)
  os.makedirs(root, exist_ok=True)
  slots = _Slots(
    spec,
    root,
    points,
    overrides,
    jobs=jobs,
    device_var=device_var,
    one_process_per_point=one_process_per_point,
  )
  if len(set(slots.names)) != len(slots.names):
    raise ValueError("two points of the study have the same name; their factor values repeat")
  write_plan(root, spec, points, overrides, slots.factors)
  queue = list(range(len(points)) if indices is None else indices)
  forwarded = False
  try:
    slots.stop.__enter__()
    while queue or slots.running:
      if slots.stop.signal_name and not forwarded:
        slots.forward_stop()
        forwarded = True
        queue.clear()
      slots.start_ready(queue)
      slots.collect()
      if slots.running:
        time.sleep(0.05)
  finally:
    slots.close()
    slots.stop.__exit__()
  refresh_results(root, points, slots.exit_codes)
  codes = slots.exit_codes.values()
  if slots.stop.signal_name:
    stopped = sum(code in STOPPED_EXITS for code in codes)
    finished = sum(is_finished(os.path.join(root, name)) for name in slots.names)
    raise StudyStopped(slots.stop.signal_name, finished, stopped, len(points))
  return sum(1 for code in codes if code)


def after_training(
  spec: str,
  root: str,
  name: str,
  point: Mapping[str, Any],
  overrides: Mapping[str, Any],
  code: int,
  started: float,
  evaluate,
) -> None:
  """What follows the training attempt of point ``name`` under every executor: its wall time
  (since ``started``) in ``point_times.json``, then, if it finished, its robustness evaluation
  when the config asks for one (``evaluate(point, arguments) -> exit status``; None: skip it,
  the study is stopping)."""
  record_time(os.path.join(root, name), "train", time.time() - started, code)
  if code == 0 and evaluate is not None:
    _maybe_evaluate(spec, root, name, overrides, point, run=evaluate)


def run_point_here(
  spec: str,
  root: str,
  points: Sequence[Mapping[str, Any]],
  index: int,
  *,
  overrides: Mapping[str, Any],
  train,
  evaluate,
) -> int:
  """Point ``index`` in this process, as :func:`run_study` runs each point: skipped when
  finished (its robustness evaluation still runs if due and missing), else trained by
  ``train(spec, workdir, settings) -> exit status`` and followed by :func:`after_training`.

  For executors whose task is one point (a SLURM array task,
  :mod:`hybridconv.studies.slurm`). Returns the training's exit status (0 when skipped).
  """
  workdir, settings = point_request(spec, root, points, index, overrides)
  name = os.path.basename(workdir)
  if is_finished(workdir):
    print(f"[study] {name}: finished already", flush=True)
    _maybe_evaluate(spec, root, name, overrides, points[index], run=evaluate)
    return 0
  print(f"[study] start {name} ({index + 1}/{len(points)})", flush=True)
  started = time.time()
  code = train(spec, workdir, settings)
  print(f"[study] {name}: exit {code} after {time.time() - started:.0f} s", flush=True)
  after_training(spec, root, name, points[index], overrides, code, started, evaluate)
  return code


def _maybe_evaluate(
  spec: str,
  root: str,
  name: str,
  overrides: Mapping[str, Any],
  point: Mapping[str, Any],
  *,
  run,
) -> None:
  """Evaluates a finished point's robustness when its config asks and it has none yet.

  ``run(point, arguments) -> exit status`` runs ``hybridconv evaluate`` with
  ``arguments`` (in the slot's worker, or as a process of its own).
  """
  due, settings = _robustness_settings(spec, overrides, point)
  workdir = os.path.join(root, name)
  if not due or os.path.exists(os.path.join(workdir, ROBUSTNESS_FILE)):
    return
  print(f"[study] robustness of {name}", flush=True)
  started = time.time()
  code = run(point, robustness_arguments(workdir, **settings))
  record_time(workdir, "robustness", time.time() - started, code)
  if code:
    print(f"[study] robustness evaluation of {name} failed with exit {code}", flush=True)
