"""Where robustness results go besides ``robustness.json``: REPORT.md and W&B.

No JAX here: :mod:`hybridconv.tracking.report` imports :func:`report_section`
to add a table and accuracy-versus-level curves to a run's ``REPORT.md``
whenever the workdir holds ``robustness.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure

from hybridconv.run_layout import ROBUSTNESS_FILE

RESULTS_FILE = ROBUSTNESS_FILE
FIGURE_NAME = "robustness.png"
TITLES = {
  "clean": "clean",
  "gaussian_noise": "Gaussian noise",
  "gaussian_blur": "Gaussian blur",
  "contrast": "contrast reduction",
  "fgsm": "FGSM",
  "pgd_linf": "PGD L-inf",
}


def read_results(workdir: str) -> dict[str, Any] | None:
  """``robustness.json`` of ``workdir``, or None if it has none."""
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def by_family(results: Mapping[str, Any]) -> dict[str, list[dict]]:
  """Entries grouped by family, in the order they were evaluated."""
  grouped: dict[str, list[dict]] = {}
  for entry in results["entries"]:
    grouped.setdefault(entry["family"], []).append(entry)
  return grouped


def _level_text(family: str, level: float) -> str:
  if family in ("fgsm", "pgd_linf"):
    return f"{level * 255:.3g}/255"
  return f"{level:.3g}"


def plot_curves(results: Mapping[str, Any], path: str) -> str | None:
  """Accuracy against level, one panel per corruption family, clean accuracy dashed."""
  families = [(f, e) for f, e in by_family(results).items() if f != "clean"]
  if not families:
    return None
  fig = Figure(figsize=(3.2 * len(families), 3.0))
  for i, (family, entries) in enumerate(families):
    ax = fig.add_subplot(1, len(families), i + 1)
    scale = 255 if family in ("fgsm", "pgd_linf") else 1
    ax.plot([e["level"] * scale for e in entries], [e["accuracy"] for e in entries], marker="o")
    ax.axhline(results["clean_accuracy"], color="grey", linestyle="--", linewidth=1)
    ax.set_ylim(0, 1)
    ax.set_title(TITLES.get(family, family), fontsize=10)
    unit = results.get("units", {}).get(family, "")
    ax.set_xlabel(
      unit.replace("[0, 1] pixel units", "x 1/255") if scale == 255 else unit, fontsize=8
    )
    ax.grid(alpha=0.3)
    if family == "contrast":
      ax.invert_xaxis()  # severity grows to the right in every panel
    if i == 0:
      ax.set_ylabel("accuracy")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  return path


def report_section(workdir: str, fig_dir: str, fig_prefix: str) -> list[str]:
  """Markdown lines of the robustness section ([] without ``robustness.json``).

  Args:
    workdir: the run directory.
    fig_dir: directory for the figure (created by the caller).
    fig_prefix: how the Markdown refers to ``fig_dir`` (relative to the report).
  """
  results = read_results(workdir)
  if results is None:
    return []
  lines = [
    "## Robustness",
    "",
    f"Checkpoint step {results['step']} ({results['checkpoint']}), suite "
    f"`{results['suite']}`: {results['num_test_images']} test images, attacks on a "
    f"subset of {results['num_attack_images']} (seed {results['subset_seed']}, PGD "
    f"{results['pgd_steps']} steps). Corruptions act on [0, 1] pixels before the input "
    "normalisation (`hybridconv evaluate`).",
    "",
    "| family | level | accuracy | images |",
    "|---|---|---|---|",
  ]
  for family, entries in by_family(results).items():
    for entry in entries:
      lines.append(
        f"| {family} | {_level_text(family, entry['level'])} | "
        f"{entry['accuracy']:.4f} | {entry['num_images']} |"
      )
  lines += [
    "",
    "Mean accuracy over levels: "
    + ", ".join(f"{family} {value:.4f}" for family, value in results["summary"].items())
    + ".",
    "",
  ]
  if plot_curves(results, os.path.join(fig_dir, FIGURE_NAME)):
    lines += [f"![robustness curves]({fig_prefix}/{FIGURE_NAME})", ""]
  return lines


def wandb_rows(results: Mapping[str, Any]) -> tuple[list[str], list[list]]:
  """``(columns, rows)`` of the W&B results table."""
  columns = ["family", "level", "accuracy", "num_images"]
  return columns, [
    [e["family"], e["level"], e["accuracy"], e["num_images"]] for e in results["entries"]
  ]


def log_to_wandb(logger, results: Mapping[str, Any]) -> None:
  """A table of every entry, the per-family means, and one line plot per family.

  ``logger`` is a :class:`hybridconv.tracking.Logger` that reaches the run's
  W&B run (same run id, so the results join the training run's page), e.g. a
  :class:`~hybridconv.tracking.wandb_logger.WandbLogger` behind a
  :class:`~hybridconv.tracking.writers.BackgroundWriter`.
  """
  columns, rows = wandb_rows(results)
  scalars = {f"robustness/{family}": value for family, value in results["summary"].items()}
  logger.log_results_table("robustness/results", columns, rows, scalars=scalars)
  for family, entries in by_family(results).items():
    if family == "clean":
      continue
    family_rows = [[e["level"], e["accuracy"]] for e in entries]
    logger.log_results_table(
      f"robustness/{family}_table",
      ["level", "accuracy"],
      family_rows,
      line_plot=(
        f"robustness/{family}_curve",
        "level",
        "accuracy",
        f"{TITLES.get(family, family)}: accuracy vs level",
      ),
    )
