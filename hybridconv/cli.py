"""The ``hybridconv`` console script: ``hybridconv <command> [flags]``.

Commands:
  train    same flags as ``python -m hybridconv.main``
  study    run a config's ``study()`` points locally, or export a W&B sweep YAML
           (``hybridconv study --help``)
  analyze  write REPORT.md with figures for a finished run: ``--workdir DIR``
  evaluate robustness of a trained run: noise, blur, contrast, FGSM, PGD
           (``hybridconv evaluate --help``)
  compare  a study's runs -> STUDY.md, results.csv, summary.csv and figures, with
           confidence intervals (``hybridconv compare --help``)
  wandb-report
           build (and with ``--save`` save) a W&B report comparing a project's runs
           (``hybridconv wandb-report --help``)

Each command's module defines its own absl flags, so only the chosen one is
imported.
"""

from __future__ import annotations

import importlib
import os
import sys

from hybridconv import compilation_cache

COMMANDS = {
  "train": "hybridconv.main",
  "study": "hybridconv.studies.command",
  "analyze": "hybridconv.reports.run_report",
  "evaluate": "hybridconv.robustness.main",
  "compare": "hybridconv.reports.compare_report",
  "wandb-report": "hybridconv.reports.wandb_report",
}


def main(argv: list[str] | None = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  compilation_cache.enable()  # before any command imports JAX
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(__doc__.strip())
    sys.exit(0 if len(argv) >= 2 else 2)
  command = argv[1]
  if command not in COMMANDS:
    print(f"error: unknown command {command!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
    sys.exit(2)
  # Config files import their sibling defaults as `configs.default`; make the
  # working directory importable as `python -m` does.
  if os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())
  sys.argv = [f"hybridconv {command}", *argv[2:]]
  importlib.import_module(COMMANDS[command]).run()


if __name__ == "__main__":
  main()
