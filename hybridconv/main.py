r"""Command line: ``python -m hybridconv.main --config=configs/<file>.py:<variant> --workdir=DIR``.

Flags only; the work is ``hybridconv.training.train.train_and_evaluate``. The config is
locked: ``--config.optim.learning_rate=3e-3`` changes a declared key, and a
misspelt key is an error.

Exit status: 0 finished; 2 a bad config, bad data or no restorable checkpoint
(one ``error:`` line, nothing compiled for config errors); 3 a non-finite loss
or gradient (``config.nan_policy``); 128 + the signal's number (143 SIGTERM,
130 SIGINT) stopped by that signal after saving a checkpoint -- run the same
command again to resume.
"""

from __future__ import annotations

import logging as py_logging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from hybridconv import host_memory

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Experiment config file and variant, e.g. configs/fashion_mnist.py:hybrid.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Run directory (config.json, metrics.jsonl, checkpoints/); resumes if present."
)
flags.mark_flags_as_required(["config", "workdir"])


class _LibraryInfoFilter(py_logging.Filter):
  """Drops INFO lines of orbax and JAX internals (dozens per checkpoint) unless -v 1."""

  NOISY = ("/orbax/", "/jax/_src/")

  def filter(self, record: py_logging.LogRecord) -> bool:
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


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    keep_host_buffers = _CONFIG.value.keep_host_buffers
  except OSError as error:  # config_flags loads the file lazily: a missing file shows here
    from hybridconv import configlib  # noqa: PLC0415

    print(f"error: {configlib.explain_bad_value(sys.argv) or error}", file=sys.stderr)
    sys.exit(2)
  if keep_host_buffers:
    host_memory.keep_large_buffers_in_heap()  # before JAX allocates anything
  # Imported here so that `--help` and flag errors do not pay for importing JAX.
  import jax  # noqa: PLC0415

  from hybridconv import sharding  # noqa: PLC0415
  from hybridconv.training import nonfinite, preemption, train  # noqa: PLC0415

  try:
    sharding.configure_cpu_devices(_CONFIG.value)  # before anything starts JAX
  except ValueError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)

  logging.get_absl_handler().addFilter(_LibraryInfoFilter())
  try:
    final = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except preemption.Preempted as stop:
    print(f"preempted: {stop}", file=sys.stderr)
    sys.exit(preemption.exit_code(stop.signal_name))
  except nonfinite.NonFiniteError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(nonfinite.EXIT_CODE)
  except (ValueError, FileNotFoundError) as error:
    # Bad configs and missing or bad data are reported as one line, not a traceback.
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  if jax.process_index() == 0:
    _print_summary(final, _WORKDIR.value)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with a misspelt ``--config.a.b=v`` explained in one line."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as error:
    from hybridconv import configlib  # noqa: PLC0415

    print(f"error: {configlib.explain_bad_override(argv) or error}", file=sys.stderr)
    sys.exit(2)
  except flags.IllegalFlagValueError as error:
    # A --config that cannot be built (unknown variant) or a --config.key value of the wrong
    # type: absl would print a traceback and exit 1.
    from hybridconv import configlib  # noqa: PLC0415

    print(f"error: {configlib.explain_bad_value(argv) or error}", file=sys.stderr)
    sys.exit(2)
  except flags.Error as error:  # what absl's own parser prints
    print(
      f"FATAL Flags parsing error: {error}\nPass --helpshort or --helpfull to see help on flags.",
      file=sys.stderr,
    )
    sys.exit(1)


def run() -> None:
  """Entry point for ``hybridconv train`` and ``python -m hybridconv.main``."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
