"""``hybridconv evaluate --workdir DIR``: robustness of a trained run's checkpoint.

Writes ``<workdir>/robustness.json`` (schema: :func:`hybridconv.robustness.evaluate
.evaluate_workdir`), rewrites the run's ``REPORT.md`` with a robustness table and
curves, and logs a table and one line plot per family to the run's W&B run
(unless its ``tracking.wandb.mode`` is ``'disabled'``).

Exit status: 0 done; 2 bad input (no checkpoint, unknown suite, corruption or
checkpoint step, eps outside [0, 1], an unsupported dataset), reported in one
``error:`` line before anything is loaded or compiled.

argparse rather than absl flags: the documented spelling is ``--pgd-images``, and
``--pgd_images`` is accepted too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence

from hybridconv import compilation_cache, host_memory
from hybridconv.robustness import suites
from hybridconv.run_layout import ROBUSTNESS_FILE


class _Parser(argparse.ArgumentParser):
  def error(self, message: str):  # one line, as every hybridconv command reports bad input
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="hybridconv evaluate", description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True, help="a run directory of `hybridconv train`")
  parser.add_argument("--checkpoint", default="latest", help="'latest', 'best' or a saved step")
  parser.add_argument("--suite", default="default", help=f"one of {', '.join(suites.SUITES)}")
  parser.add_argument(
    "--corruptions",
    default="",
    help=f"comma-separated subset of {', '.join(suites.FAMILIES)} ('' = all)",
  )
  parser.add_argument(
    "--eps",
    default="",
    help="comma-separated attack budgets in [0, 1] replacing the suite's, e.g. '0,2/255,8/255'",
  )
  parser.add_argument(
    "--pgd-images",
    "--pgd_images",
    dest="pgd_images",
    type=int,
    default=2000,
    help="attack subset size (0 = the whole test split)",
  )
  parser.add_argument(
    "--test-images",
    "--test_images",
    dest="test_images",
    type=int,
    default=0,
    help="seeded subset for the clean and corrupted accuracies (0 = the whole test split)",
  )
  parser.add_argument(
    "--pgd-steps",
    "--pgd_steps",
    dest="pgd_steps",
    type=int,
    default=None,
    help="PGD iterations (default: the suite's, 10)",
  )
  parser.add_argument(
    "--subset-seed",
    "--subset_seed",
    dest="subset_seed",
    type=int,
    default=0,
    help="seed of the attack subset, the noise and PGD's random starts",
  )
  return parser


def _request(args):
  """The checked suite, the run's config and workdir; ValueError on bad input.

  The run's CPU device count is set up here, after the config is read and
  before anything (orbax's ``best`` lookup included) starts JAX.
  """
  from hybridconv import sharding  # noqa: PLC0415 (imports JAX: after the flag checks)
  from hybridconv.robustness import evaluate, restore  # noqa: PLC0415

  families = [f.strip() for f in args.corruptions.split(",") if f.strip()] or None
  eps = suites.parse_levels(args.eps) if args.eps.strip() else None
  suite = evaluate.check_request(
    args.suite,
    corruptions_=families,
    eps=eps,
    attack_images=args.pgd_images,
    pgd_steps=args.pgd_steps,
    test_images=args.test_images,
  )
  workdir = os.path.abspath(args.workdir)
  config = restore.load_run_config(workdir)
  if config.keep_host_buffers:
    host_memory.keep_large_buffers_in_heap()  # before JAX allocates anything
  sharding.configure_cpu_devices(config)  # the run's device count
  restore.resolve_checkpoint(config, workdir, args.checkpoint)
  restore.check_data_supported(config)
  return suite, config, workdir


def _refresh_report(workdir: str) -> None:
  """Rewrites the run's ``REPORT.md`` with the new results, as ``hybridconv analyze`` does.

  Run as that command in a child process: the report lives on the reports floor above
  this package, which must not import it. A report that cannot be written costs a
  warning, never the results already saved.
  """
  done = subprocess.run(
    [sys.executable, "-m", "hybridconv.cli", "analyze", f"--workdir={workdir}"],
    capture_output=True,
    text=True,
    check=False,
  )
  if done.returncode == 0:
    print(f"report: {done.stdout.strip()}")
    return
  why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
  print(f"warning: REPORT.md not written: {why.removeprefix('error: ')}", file=sys.stderr)


def _publish(config, workdir: str, results: dict) -> None:
  """REPORT.md and W&B; neither may lose the results already written."""
  from hybridconv.robustness import outputs  # noqa: PLC0415
  from hybridconv.tracking import factory  # noqa: PLC0415

  _refresh_report(workdir)
  settings = config.tracking.wandb
  if settings.mode == "disabled":
    return
  # In the background like training's: a failing or hanging W&B costs a
  # warning and at most writers.CLOSE_TIMEOUT_S, never the exit status.
  logger = factory.background_wandb(settings, workdir)
  outputs.log_to_wandb(logger, results)
  logger.close()


def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  try:
    suite, config, workdir = _request(args)
    from hybridconv.robustness import evaluate  # noqa: PLC0415

    results = evaluate.evaluate_workdir(
      workdir,
      checkpoint=args.checkpoint,
      suite=suite,
      pgd_images=args.pgd_images,
      subset_seed=args.subset_seed,
      test_images=args.test_images,
    )
  except (ValueError, FileNotFoundError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  for family, value in results["summary"].items():
    print(f"  {family}: {value:.4f}")
  print(
    f"results in {os.path.join(workdir, ROBUSTNESS_FILE)} ({results['seconds']['total']:.1f} s)"
  )
  _publish(config, workdir, results)
  return 0


def run() -> None:
  """Entry for ``hybridconv evaluate`` (arguments from ``sys.argv``)."""
  compilation_cache.enable()
  raise SystemExit(main(sys.argv[1:]))


if __name__ == "__main__":
  run()
