r"""Command line: ``python -m hybridconv.main --config=configs/<file>.py:<variant> --workdir=DIR``.

Flags only; the work is ``hybridconv.training.train.train_and_evaluate``. The config is
locked: ``--config.optim.learning_rate=3e-3`` changes a declared key, and a
misspelt key is an error.

Exit status: 0 finished; 2 a bad config, bad data or no restorable checkpoint
(one ``error:`` line, nothing compiled for config errors); 3 a non-finite loss
or gradient (``config.nan_policy``); 128 + the signal's number (143 SIGTERM,
130 SIGINT, 140 SIGUSR2, 138 SIGUSR1) stopped by that signal after saving a
checkpoint -- run the same command again to resume.
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from hybridconv import compilation_cache
from hybridconv.training import command

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Experiment config file and variant, e.g. configs/fashion_mnist.py:hybrid.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Run directory (config.json, metrics.jsonl, checkpoints/); resumes if present."
)
_DRY_RUN = flags.DEFINE_bool(
  "dry_run",
  False,
  "Check the config and workdir as a run does before loading data, print what would run, "
  "train nothing.",
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = _CONFIG.value
  try:
    _ = config.keep_host_buffers  # config_flags loads the file lazily: a missing file shows here
  except OSError as error:
    from hybridconv import configlib  # noqa: PLC0415

    print(f"error: {configlib.explain_bad_value(sys.argv) or error}", file=sys.stderr)
    sys.exit(2)
  # JAX is imported only from here on, so that `--help` and flag errors do not pay for it.
  try:
    command.prepare_process(config)
  except ValueError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  command.quiet_library_logs()
  if _DRY_RUN.value:
    try:
      print(command.check_training(config, _WORKDIR.value))
    except ValueError as error:
      print(f"error: {error}", file=sys.stderr)
      sys.exit(2)
    return
  code = command.run_training(config, _WORKDIR.value)
  if code:
    sys.exit(code)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with a misspelt ``--config.a.b=v`` explained in one line."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as error:
    from hybridconv import configlib  # noqa: PLC0415

    print(f"error: {configlib.explain_bad_override(argv) or error}", file=sys.stderr)
    sys.exit(2)
  except OSError as error:
    # A --config file that cannot be read, found while applying a --config.a.b=v override
    # (config_flags loads the file only then): absl would print two tracebacks and exit 1.
    from hybridconv import configlib  # noqa: PLC0415

    print(f"error: {configlib.explain_bad_value(argv) or error}", file=sys.stderr)
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
  compilation_cache.enable()  # before JAX is imported
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
