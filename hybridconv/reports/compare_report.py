"""``hybridconv compare``: every file of a study report, from the study table.

::

  hybridconv compare --workdir runs/study --reference model.first_layer=free

The flags, the grouping and the statistics are :mod:`hybridconv.studies.compare`'s;
this module writes what they give: ``results.csv`` and ``summary.csv``; with a
reference arm also ``paired.csv`` (every reading's paired differences) and
``FINDINGS.md`` (:mod:`hybridconv.reports.findings`), and ``--readme``'s findings
block; then ``STUDY.md`` and its figures (:mod:`hybridconv.reports.study_report`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from hybridconv.reports import findings, study_csv
from hybridconv.run_layout import FINDINGS_FILE, GROUPS_TABLE_FILE, PAIRED_FILE, RUNS_TABLE_FILE
from hybridconv.studies import compare


def write(study: compare.Study, outputs: compare.Outputs) -> str:
  """Writes the study's report files into ``outputs.out`` (default: the study's root).

  Returns:
    The path of ``STUDY.md``.

  Raises:
    ValueError: a ``--readme`` that cannot take the findings, before anything is written.
  """
  if outputs.readme is not None:
    _check_readme(outputs.readme, study.reference)
  out = os.path.abspath(outputs.out or study.root)
  os.makedirs(out, exist_ok=True)
  study_csv.write_csv(
    os.path.join(out, RUNS_TABLE_FILE), study_csv.results_rows(study.runs, study.factors, out)
  )
  study_csv.write_csv(os.path.join(out, GROUPS_TABLE_FILE), study_csv.summary_rows(study))
  from hybridconv.reports import study_report  # noqa: PLC0415  (matplotlib, JAX for likeness)

  if study.reference:
    study_csv.write_csv(os.path.join(out, PAIRED_FILE), study.paired)
    findings_path = findings.write_findings(
      os.path.join(out, FINDINGS_FILE),
      study.paired,
      study.runs,
      study.factors,
      study.reference,
      command=outputs.command,
      plan=study.plan,
    )
    if outputs.readme:
      _update_readme(outputs.readme, findings_path)
  return study_report.write_study(
    out, study, figures=outputs.figures, likeness=outputs.likeness, command=outputs.command
  )


def _update_readme(readme: str, findings_path: str) -> None:
  """Replaces the findings block of ``readme`` by the one just written (nothing else)."""
  with open(readme, encoding="utf-8") as f:
    document = f.read()
  with open(findings_path, encoding="utf-8") as f:
    generated = f.read()
  with open(readme, "w", encoding="utf-8") as f:
    f.write(findings.replace_block(document, generated))


def _check_readme(readme: str, reference) -> None:
  """Refuses ``--readme`` before anything is written: it needs a reference and a block."""
  if reference is None:
    raise ValueError(f"--readme={readme!r} needs --reference (the findings compare to it)")
  try:
    with open(readme, encoding="utf-8") as f:
      text = f.read()
  except OSError as error:
    raise ValueError(f"--readme={readme!r} cannot be read: {error.strerror}") from error
  if findings.BEGIN not in text or findings.END not in text:
    raise ValueError(
      f"--readme={readme!r} has no findings block: add the lines {findings.BEGIN!r} and "
      f"{findings.END!r} where the findings belong"
    )


def main(argv: Sequence[str] | None = None) -> int:
  """``hybridconv compare`` with ``argv``; the exit status (2 for bad input)."""
  return compare.main(argv, write)


def run() -> None:
  """Entry for ``hybridconv compare`` (arguments from ``sys.argv``)."""
  sys.exit(main())


if __name__ == "__main__":
  run()
