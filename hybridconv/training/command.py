"""What ``hybridconv train`` does with a config: process set-up, the run, its exit status.

Shared by the command line (:mod:`hybridconv.main`, which only parses flags)
and the study runner's worker (:mod:`hybridconv.studies.worker`, which trains
many points in one process). Imports no JAX until a function needs it, so the
host heap can be set up first.
"""

from __future__ import annotations

import logging as py_logging
import os
import sys
import warnings

from absl import logging

from hybridconv import host_memory, run_layout


class LibraryNoiseFilter(py_logging.Filter):
  """Drops INFO lines of orbax and JAX internals (dozens per checkpoint) unless -v 1, and
  asyncio's reports of abandoned futures.

  When one array of a damaged checkpoint fails to read, orbax abandons the reads running
  beside it; asyncio logs their exceptions (the same damage, already in the restore error)
  whenever the futures are collected, which could land beside the one ``error:`` line.
  """

  NOISY = ("/orbax/", "/jax/_src/")
  ABANDONED = ("Future exception was never retrieved", "Task exception was never retrieved")

  def filter(self, record: py_logging.LogRecord) -> bool:
    if record.name == "asyncio" and str(record.msg).startswith(self.ABANDONED):
      return False
    if record.levelno >= py_logging.WARNING or logging.get_verbosity() >= logging.DEBUG:
      return True
    return not any(part in record.pathname for part in self.NOISY)


def _print_summary(final: dict, workdir: str) -> None:
  """The final metrics, and what the workdir now holds."""
  workdir = os.path.abspath(workdir)
  shown = ("eval/accuracy", "eval/top5_accuracy", "eval/loss", "images_per_sec", "train_seconds")
  lines = [f"  {key}: {final[key]:.4f}" for key in shown if key in final]
  print(f"finished at step {final['step']}:", *lines, sep="\n")
  entries = sorted(
    name + ("/" if os.path.isdir(os.path.join(workdir, name)) else "")
    for name in os.listdir(workdir)
  )
  print(f"results in {workdir}: {', '.join(entries)}")


def prepare_process(config) -> None:
  """The process-wide set-up of a training process, before JAX starts.

  The host heap set-up (``config.keep_host_buffers``) and the CPU device count
  (``config.cpu_devices``) hold for the whole process: the study runner's
  worker applies them once, for its first point. Raises ValueError on a bad
  ``cpu_devices``.
  """
  if config.keep_host_buffers:
    host_memory.keep_large_buffers_in_heap()  # before JAX allocates anything
  from hybridconv import sharding  # noqa: PLC0415  (imports JAX)

  sharding.configure_cpu_devices(config)  # before anything starts JAX


def run_training(config, workdir: str) -> int:
  """``train_and_evaluate`` with the command line's messages; returns its exit status.

  Preemption, a non-finite loss and a bad config or data are one line on
  stderr and their exit status (see the module docstring); anything else
  raises. The final metrics are printed on success.
  """
  import jax  # noqa: PLC0415

  from hybridconv.training import nonfinite, preemption, train  # noqa: PLC0415

  try:
    final = train.train_and_evaluate(config, workdir)
  except preemption.Preempted as stop:
    print(f"preempted: {stop}", file=sys.stderr)
    return preemption.exit_code(stop.signal_name)
  except nonfinite.NonFiniteError as error:
    print(f"error: {error}", file=sys.stderr)
    return nonfinite.EXIT_CODE
  except (ValueError, FileNotFoundError) as error:
    # Bad configs and missing or bad data are reported as one line, not a traceback.
    print(f"error: {error}", file=sys.stderr)
    return 2
  if jax.process_index() == 0:
    _print_summary(final, workdir)
  return 0


def check_training(config, workdir: str) -> str:
  """What ``hybridconv train --dry_run`` prints: the run passed every check a real run makes
  before it loads data (config values, batch sizes over this host's devices, the workdir).

  Raises:
    ValueError: the first problem, naming the key or path.
  """
  import jax  # noqa: PLC0415

  from hybridconv import sharding  # noqa: PLC0415
  from hybridconv.training import validation  # noqa: PLC0415

  workdir = os.path.abspath(workdir)
  validation.validate_config(config, sharding.make_mesh(), workdir)
  state = "resumes" if os.path.isdir(os.path.join(workdir, run_layout.CHECKPOINT_DIR)) else "starts"
  return (
    f"config OK: {config.model.name} with first layer {config.model.first_layer!r} on "
    f"{config.data.name}, train_for={config.train_for}, batch {config.batch_size} over "
    f"{jax.device_count()} device(s); the run {state} in {workdir} (nothing trained: --dry_run)"
  )


def quiet_library_logs() -> None:
  """Hides orbax's and JAX's INFO lines, and the reports of reads orbax abandoned (asyncio's
  futures on absl's handler, unawaited coroutines), once per process."""
  # The reads orbax abandons can also leave coroutines never awaited, which Python reports
  # when the process exits, after the error line.
  warnings.filterwarnings(
    "ignore", message="coroutine .* was never awaited", category=RuntimeWarning
  )
  handler = logging.get_absl_handler()
  if not any(isinstance(f, LibraryNoiseFilter) for f in handler.filters):
    handler.addFilter(LibraryNoiseFilter())
