"""The robustness section of a run's ``REPORT.md``: a table and accuracy-versus-level curves.

:mod:`hybridconv.reports.run_report` adds it whenever the workdir holds
``robustness.json`` (written by ``hybridconv evaluate``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure

from hybridconv.robustness import suites
from hybridconv.robustness.outputs import by_family, read_results

FIGURE_NAME = "robustness.png"


def _level_text(family: str, level: float) -> str:
  if suites.is_attack(family):
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
    scale = 255 if suites.is_attack(family) else 1
    ax.plot([e["level"] * scale for e in entries], [e["accuracy"] for e in entries], marker="o")
    ax.axhline(results["clean_accuracy"], color="grey", linestyle="--", linewidth=1)
    ax.set_ylim(0, 1)
    ax.set_title(suites.label(family), fontsize=10)
    unit = results.get("units", {}).get(family, "")
    ax.set_xlabel(
      unit.replace("[0, 1] pixel units", "x 1/255") if scale == 255 else unit, fontsize=8
    )
    ax.grid(alpha=0.3)
    if family in suites.REGISTRY and suites.REGISTRY[family].milder_up:
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
