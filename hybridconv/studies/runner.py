"""Runs a study's points in worker processes into one study root, resumably.

Each point trains in ``<root>/<point name>`` (:class:`hybridconv.studies.plan.Study`)
inside a worker process (:mod:`hybridconv.studies.worker`: one per slot, imports JAX
once, replaced after a point that fails; with ``one_process_per_point`` a fresh one
per point), from the resolved config the study was loaded with -- the config file
is not executed again -- so

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

import csv
import os
import signal
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hybridconv import compilation_cache, configlib
from hybridconv.run_layout import CONFIG_FILE, RESULTS_FILE, ROBUSTNESS_FILE, TIMES_FILE
from hybridconv.studies import grid as grid_lib
from hybridconv.studies import plan as plan_lib
from hybridconv.studies import records
from hybridconv.training import preemption
from hybridconv.training import workdir as workdir_lib

# Exit statuses of a point stopped by a signal after saving a checkpoint (128 + SIGTERM, SIGINT,
# SIGUSR1 or SIGUSR2: the signals the trainer turns into a checkpoint and a stop).
STOPPED_EXITS = tuple(128 + s.value for s in preemption.PreemptionFlag.SIGNALS)


def is_finished(workdir: str) -> bool:
  """Whether the point's run reached its last step (its ``summary.json`` says so)."""
  summary = workdir_lib.read_summary(workdir)
  return bool(summary and summary.get("finished"))


def slot_cores(cores: Sequence[int], jobs: int, slot: int) -> set[int] | None:
  """The CPU cores slot ``slot`` of ``jobs`` runs on: its own contiguous share of ``cores``.

  Why: XLA sizes its CPU thread pools, and hybridconv its CPU device count
  (``config.cpu_devices=0``), by the cores a process may use. Two points that each
  take every core contend for them and finish no sooner than one after the other;
  each on its own half, they run side by side. None (no pinning) with one slot or
  fewer cores than slots.
  """
  ordered = sorted(cores)
  if jobs < 2 or len(ordered) < jobs:
    return None
  share, extra = divmod(len(ordered), jobs)
  start = slot * share + min(slot, extra)
  return set(ordered[start : start + share + (slot < extra)])


def child_environment(root: str, slot: int, device_var: str) -> dict[str, str]:
  """The environment of a point: the user's compilation cache; one device per slot if asked."""
  env = dict(os.environ)
  compilation_cache.enable(env)
  if device_var:
    env[device_var] = str(slot)
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
  names = [plan_lib.point_name(p, factors) for p in points]
  rows = [
    result_row(root, n, p, factors, exit_codes.get(n)) for n, p in zip(names, points, strict=True)
  ]
  return write_results(root, rows)


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
  point (:class:`worker.Client` runs its worker in a session of its own, so a
  terminal's Ctrl-C does not reach it twice). Unlike a training run's flag, a
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
  ``one_process_per_point`` a worker serves one request (a point's training or
  its robustness evaluation) and the next gets a fresh one.
  """

  def __init__(
    self, study: plan_lib.Study, root: str, *, jobs: int, device_var: str, one_process: bool
  ):
    self.study, self.root = study, root
    self.device_var, self.one_process = device_var, one_process
    self.exit_codes: dict[str, int | None] = {}
    self.running: list[tuple[Any, str, int, float]] = []  # (worker, name, slot, started)
    self.workers: dict = {}  # slot -> worker.Client
    self.jobs = max(1, jobs)
    self.free = list(range(self.jobs))
    self.stop = StopSignals()

  def _worker(self, slot: int):
    from hybridconv.studies import worker as worker_lib  # noqa: PLC0415

    if slot not in self.workers:
      env = child_environment(self.root, slot, self.device_var)
      client = self.workers[slot] = worker_lib.Client(env)
      # Slots with devices of their own keep every host core.
      cores = None if self.device_var else slot_cores(os.sched_getaffinity(0), self.jobs, slot)
      if cores:  # now, before the worker imports JAX, which reads its cores once
        os.sched_setaffinity(client.process.pid, cores)
      on = f", cores {','.join(map(str, sorted(cores)))}" if cores else ""
      print(f"[study] worker for slot {slot}: pid {client.process.pid}{on}", flush=True)
    return self.workers[slot]

  def _start(self, index: int, slot: int):
    """Sends point ``index`` to the slot's worker (started if it has none); the worker."""
    workdir = os.path.join(self.root, self.study.names[index])
    self._worker(slot).send(workdir, self.study.configs[index])
    return self.workers[slot]

  def evaluator(self, slot: int):
    """``run(config, arguments) -> exit status``: ``hybridconv evaluate`` on the (idle) slot's
    worker, for the finished point whose resolved config is ``config``."""

    def run(config: str, arguments: list[str]) -> int:
      while True:
        client = self._worker(slot)
        client.evaluate(config, arguments)
        while (answer := client.poll()) is None:
          time.sleep(0.05)
        self._close_if_done(slot, client, answer)
        if not answer.get("restart"):
          return int(answer["exit"])

    return run

  def _close_if_done(self, slot: int, client, answer: Mapping[str, Any]) -> None:
    """Closes a worker that has ended: after a restart answer or a request that failed (what
    failed may have left state behind), or after every request with ``one_process``."""
    if self.one_process or answer.get("restart") or answer["exit"]:
      client.close()
      self.workers.pop(slot, None)

  def start_ready(self, queue: list[int]) -> None:
    """Starts queued points while slots are free; finished ones are skipped (their robustness
    evaluation still runs if due and missing)."""
    while queue and self.free and not self.stop.signal_name:
      index = queue.pop(0)
      name = self.study.names[index]
      if is_finished(os.path.join(self.root, name)):
        run = self.evaluator(self.free[0])
        _maybe_evaluate(self.root, name, self.study.configs[index], run=run)
        continue
      slot = self.free.pop(0)
      print(f"[study] start {name} ({index + 1}/{len(self.study.points)})", flush=True)
      self.running.append((self._start(index, slot), name, slot, time.time()))

  def collect(self) -> None:
    """Handles every running point that answered: ended, or to be restarted on a new worker."""
    for item in list(self.running):
      client, name, slot, started = item
      answer = client.poll()
      if answer is None:
        continue
      self.running.remove(item)
      self._close_if_done(slot, client, answer)
      if answer.get("restart"):  # the worker cannot take this point: a fresh one will
        if self.stop.signal_name:
          self.free.append(slot)  # not started: nothing to stop
        else:
          index = self.study.names.index(name)
          self.running.append((self._start(index, slot), name, slot, started))
        continue
      self._finish(name, slot, started, int(answer["exit"]))

  def _finish(self, name: str, slot: int, started: float, code: int) -> None:
    self.exit_codes[name] = code
    self.free.append(slot)
    print(f"[study] {name}: exit {code} after {time.time() - started:.0f} s", flush=True)
    evaluate = None if self.stop.signal_name else self.evaluator(slot)
    config = self.study.configs[self.study.names.index(name)]
    after_training(self.root, name, config, code, started, evaluate)
    refresh_results(self.root, self.study.points, self.exit_codes)

  def forward_stop(self) -> None:
    """One SIGTERM to each running point (a second would cut its checkpoint short)."""
    for client, *_ in self.running:
      client.stop()

  def close(self) -> None:
    for client in self.workers.values():
      client.close()


def run_study(
  study: plan_lib.Study,
  root: str,
  *,
  indices: Sequence[int] | None = None,
  jobs: int = 1,
  device_var: str = "",
  one_process_per_point: bool = False,
) -> int:
  """Runs the unfinished points among ``indices`` (all by default), ``jobs`` at a time
  (:class:`_Slots`: a worker process per slot, or a fresh one per point with
  ``one_process_per_point``).

  Returns how many failed. SIGTERM, SIGINT or SIGHUP stop the study: no new point
  starts, each running point gets one SIGTERM (it saves a checkpoint and stops), and
  :class:`StudyStopped` is raised once they have; a rerun resumes them. Finished
  points are skipped (their robustness evaluation still runs if it is due and
  missing). Names and the results file cover all the study's points, so running a
  few of them (a W&B agent) writes into the same folders as running the whole study.
  """
  root = os.path.abspath(root)
  os.makedirs(root, exist_ok=True)
  slots = _Slots(study, root, jobs=jobs, device_var=device_var, one_process=one_process_per_point)
  plan_lib.write_plan(root, study)
  queue = list(range(len(study.points)) if indices is None else indices)
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
  refresh_results(root, study.points, slots.exit_codes)
  codes = slots.exit_codes.values()
  if slots.stop.signal_name:
    stopped = sum(code in STOPPED_EXITS for code in codes)
    finished = sum(is_finished(os.path.join(root, name)) for name in study.names)
    raise StudyStopped(slots.stop.signal_name, finished, stopped, len(study.points))
  return sum(1 for code in codes if code)


def after_training(root: str, name: str, config: str, code: int, started: float, evaluate) -> None:
  """What follows the training attempt of point ``name`` under every executor: its wall time
  (since ``started``) in ``point_times.json``, then, if it finished, its robustness evaluation
  when its resolved ``config`` asks for one (``evaluate(config, arguments) -> exit status``;
  None: skip it, the study is stopping)."""
  record_time(os.path.join(root, name), "train", time.time() - started, code)
  if code == 0 and evaluate is not None:
    _maybe_evaluate(root, name, config, run=evaluate)


def run_point_here(
  root: str,
  points: Sequence[Mapping[str, Any]],
  index: int,
  config: str,
  *,
  train,
  evaluate,
) -> int:
  """Point ``index`` of ``points`` in this process, as :func:`run_study` runs each point:
  skipped when finished (its robustness evaluation still runs if due and missing), else
  trained by ``train(config, workdir) -> exit status`` from its resolved ``config``
  (:func:`hybridconv.configlib.to_literal` text) and followed by :func:`after_training`.

  For executors whose task is one point (a SLURM array task,
  :mod:`hybridconv.studies.slurm`). Returns the training's exit status (0 when skipped).
  """
  name = plan_lib.point_name(points[index], grid_lib.primary_factors(points))
  workdir = os.path.join(root, name)
  if is_finished(workdir):
    print(f"[study] {name}: finished already", flush=True)
    _maybe_evaluate(root, name, config, run=evaluate)
    return 0
  print(f"[study] start {name} ({index + 1}/{len(points)})", flush=True)
  started = time.time()
  code = train(config, workdir)
  print(f"[study] {name}: exit {code} after {time.time() - started:.0f} s", flush=True)
  after_training(root, name, config, code, started, evaluate)
  return code


def _maybe_evaluate(root: str, name: str, config: str, *, run) -> None:
  """Evaluates a finished point's robustness when its resolved ``config`` asks and it has
  none yet. ``run(config, arguments) -> exit status`` runs ``hybridconv evaluate`` with
  ``arguments`` (in the slot's worker, or in this process).
  """
  section = configlib.from_literal(config).robustness
  workdir = os.path.join(root, name)
  if not section.after_training or os.path.exists(os.path.join(workdir, ROBUSTNESS_FILE)):
    return
  print(f"[study] robustness of {name}", flush=True)
  started = time.time()
  arguments = robustness_arguments(
    workdir, suite=section.suite, pgd_images=section.pgd_images, test_images=section.test_images
  )
  code = run(config, arguments)
  record_time(workdir, "robustness", time.time() - started, code)
  if code:
    print(f"[study] robustness evaluation of {name} failed with exit {code}", flush=True)
