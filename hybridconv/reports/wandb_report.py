"""A W&B comparison report of a project's runs, built with ``wandb-workspaces``.

The report has three sections, each a panel grid over the same run set:
accuracy and loss curves; the filter grids of the chosen layers side by side
(one column per run, one row per logged step); and Gabor-likeness (median R^2
of the free kernels) plus the drift of parametric Gabor parameters over
training. Metric and image keys are those logged by
:class:`hybridconv.tracking.FilterTracker` and the train loop.

Building needs no network (:func:`build_report`; :func:`panel_specs`
serialises the panels offline). Saving needs a reachable W&B server and an API
key: :func:`save_report` checks the server with a short TCP timeout first and
returns None, with a message, when it cannot save.

Usage::

  hybridconv wandb-report --entity me --project hybridconv --layers conv1,conv2 --save
  python -m hybridconv.reports.wandb_report --entity me --project hybridconv --save
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import urllib.parse
from collections.abc import Sequence
from typing import Any

from absl import logging

DEFAULT_BASE_URL = "https://api.wandb.ai"


def _panels_accuracy(wr) -> list[Any]:
  return [
    wr.LinePlot(title="test accuracy", y=["eval/accuracy"]),
    wr.LinePlot(title="train accuracy", y=["train/accuracy"], smoothing_factor=0.6),
    wr.LinePlot(title="train loss", y=["train/loss"], smoothing_factor=0.6),
  ]


def _panels_filters(wr, layers: Sequence[str]) -> list[Any]:
  return [
    wr.MediaBrowser(
      title=f"{layer} filters",
      media_keys=[f"filters/{layer}"],
      mode="grid",
      grid_x_axis="run",
      grid_y_axis="step",
    )
    for layer in layers
  ]


def _panels_gabor(wr, layers: Sequence[str]) -> list[Any]:
  panels = [
    wr.LinePlot(
      title=f"{layer}: Gabor-likeness (R^2 median of free kernels)",
      y=[f"gabor_fit/{layer}/r2_median"],
      range_y=(0.0, 1.0),
    )
    for layer in layers
  ]
  panels += [
    wr.LinePlot(
      title=f"{layer}: Gabor parameter drift",
      y=[f"gabor/{layer}/drift/{p}" for p in ("theta", "frequency", "sigma")],
    )
    for layer in layers
  ]
  return panels


def build_report(
  entity: str,
  project: str,
  *,
  layers: Sequence[str] = ("conv1",),
  title: str = "hybridconv: kernel sources compared",
  run_filter: str = "",
  description: str = "",
):
  """The report object (nothing is sent anywhere).

  Args:
    entity: W&B user or team owning ``project`` (needed: the default entity
      can only be looked up online).
    project: project whose runs are compared.
    layers: conv layers (model paths such as 'conv1') whose filters and
      Gabor-likeness are shown.
    title: report title (at most 128 characters).
    run_filter: W&B filter expression selecting runs, e.g.
      ``"Config('model.first_layer') = 'gabor'"``; '' for all runs.
    description: text under the title.

  Returns:
    a ``wandb_workspaces.reports.v2.Report``.
  """
  if not entity or not project:
    raise ValueError(
      f"entity and project must be non-empty to build a report offline, got "
      f"entity={entity!r}, project={project!r}"
    )
  if not layers or any(not isinstance(layer, str) or not layer for layer in layers):
    raise ValueError(f"layers must be non-empty layer names such as 'conv1', got {layers!r}")
  import wandb_workspaces.reports.v2 as wr

  def grid(panels):
    runset = wr.Runset(entity=entity, project=project, name="runs", filters=run_filter)
    return wr.PanelGrid(runsets=[runset], panels=panels)

  blocks = [
    wr.P(
      description
      or f"Runs of {entity}/{project}: curves, filters and how Gabor-like the "
      "learned kernels become."
    ),
    wr.H2("Accuracy"),
    grid(_panels_accuracy(wr)),
    wr.H2("Filters over training"),
    wr.P(
      "Each tile is one filter, normalised on its own with zero as mid-grey; columns are "
      "runs, rows are logged steps."
    ),
    grid(_panels_filters(wr, layers)),
    wr.H2("Gabor-likeness"),
    wr.P(
      "Median R^2 of a Gabor fit to each free (learned) kernel: the fraction of the kernel's "
      "variance one Gabor explains. Drift: mean change of parametric Gabor parameters since "
      "initialisation."
    ),
    grid(_panels_gabor(wr, layers)),
  ]
  return wr.Report(
    entity=entity,
    project=project,
    title=title,
    description=description,
    blocks=blocks,
    width="fluid",
  )


def build_study_report(
  entity: str,
  project: str,
  *,
  group: str,
  factors: Sequence[str],
  layers: Sequence[str] = ("conv1",),
  title: str = "",
):
  """The W&B view of a study (``hybridconv study``'s runs), the online twin of STUDY.md.

  Runs are those of the study's W&B ``group`` (the runner sets it to the study's
  name), grouped by the study's ``factors`` (config keys such as
  ``model.first_layer``), so each arm is one line with its mean and a band over
  seeds, and final accuracy is one bar per arm.

  Args:
    entity, project: where the runs are.
    group: the study's W&B group.
    factors: config keys that define an arm (the seed left out).
    layers: conv layers whose filters and Gabor-likeness are shown.
    title: report title ('' = "study: <group>").

  Returns:
    a ``wandb_workspaces.reports.v2.Report`` (nothing is sent anywhere).
  """
  if not entity or not project or not group:
    raise ValueError(
      f"entity, project and group must be non-empty, got entity={entity!r}, "
      f"project={project!r}, group={group!r}"
    )
  if not factors or any(not isinstance(f, str) or not f or f == "seed" for f in factors):
    raise ValueError(f"factors must be config keys other than 'seed', got {factors!r}")
  import wandb_workspaces.reports.v2 as wr

  by = [f"config.{f}" for f in factors]

  def grid(panels):
    runset = wr.Runset(
      entity=entity, project=project, name=group, filters=f"Metric('Group') = '{group}'", groupby=by
    )
    return wr.PanelGrid(runsets=[runset], panels=panels)

  band = dict(groupby_aggfunc="mean", groupby_rangefunc="minmax")
  curves = [
    wr.LinePlot(
      title="test accuracy (mean over seeds, band: min-max)", y=["eval/accuracy"], **band
    ),
    wr.LinePlot(title="train loss", y=["train/loss"], smoothing_factor=0.6, **band),
    wr.BarPlot(
      title="final test accuracy per arm",
      metrics=["eval/accuracy"],
      groupby_aggfunc="mean",
      groupby_rangefunc="stddev",
    ),
  ]
  likeness = [
    wr.LinePlot(
      title=f"{layer}: Gabor-likeness of free kernels against its null",
      y=[f"gabor_fit/{layer}/r2_median", f"gabor_fit/{layer}/null_r2_median"],
      range_y=(0.0, 1.0),
      **band,
    )
    for layer in layers
  ]
  blocks = [
    wr.P(
      f"Study {group}: arms are the values of {', '.join(factors)}; every arm ran the same "
      "seeds. The offline report with confidence intervals and paired differences is "
      "STUDY.md (`hybridconv compare`)."
    ),
    wr.H2("Accuracy"),
    grid(curves),
    wr.H2("First-layer filters"),
    grid(_panels_filters(wr, layers)),
    wr.H2("Gabor-likeness against the null"),
    wr.P(
      "Median R^2 of a Gabor fit to the free kernels, and the same fitter's median on "
      "phase-randomised surrogates of them (same power spectrum, no spatial structure)."
    ),
    grid(likeness),
  ]
  return wr.Report(
    entity=entity,
    project=project,
    title=title or f"study: {group}",
    description=f"hybridconv study {group}",
    blocks=blocks,
    width="fluid",
  )


def panel_specs(report) -> list[dict[str, Any]]:
  """The report's panels serialised to W&B's JSON spec, offline (run sets need the server)."""
  specs = []
  for block in report.blocks:
    for panel in getattr(block, "panels", []):
      specs.append(panel._to_model().model_dump(mode="json"))
  return specs


def server_reachable(base_url: str | None = None, timeout: float = 3.0) -> bool:
  """Whether a TCP connection to the W&B server opens within ``timeout`` seconds."""
  url = urllib.parse.urlparse(base_url or os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL)
  port = url.port or (443 if url.scheme == "https" else 80)
  try:
    with socket.create_connection((url.hostname, port), timeout=timeout):
      return True
  except OSError:
    return False


def try_save(report, *, timeout: float = 3.0) -> tuple[str | None, str]:
  """Saves ``report`` if the W&B server is reachable: ``(URL, '')``, or ``(None, why not)``."""
  if not server_reachable(timeout=timeout):
    return None, "the W&B server is not reachable"
  try:
    report.save()
  except Exception as error:  # noqa: BLE001 (no key or no access: say so, do not crash)
    return None, f"{type(error).__name__}: {error}"
  return report.url, ""


def save_report(report, *, timeout: float = 3.0) -> str | None:
  """Saves ``report`` if the W&B server is reachable; returns its URL, else None (and warns)."""
  url, why = try_save(report, timeout=timeout)
  if url is None:
    logging.warning("W&B report built but not saved: %s", why)
  return url


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    prog="hybridconv wandb-report", description="Build (optionally save) a W&B comparison report."
  )
  parser.add_argument("--entity", required=True)
  parser.add_argument("--project", required=True)
  parser.add_argument("--layers", default="conv1", help="comma-separated conv layer paths")
  parser.add_argument("--filter", default="", help="W&B run filter expression")
  parser.add_argument("--title", default="hybridconv: kernel sources compared")
  parser.add_argument("--save", action="store_true", help="save to W&B (needs server and key)")
  args = parser.parse_args(argv)
  try:
    report = build_report(
      args.entity,
      args.project,
      layers=args.layers.split(","),
      title=args.title,
      run_filter=args.filter,
    )
  except ValueError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(f"built report {report.title!r} with {len(panel_specs(report))} panels")
  if args.save:
    url, why = try_save(report)
    if url is None:  # a save that did not happen is an error, not a note
      print(f"error: the report was not saved: {why}", file=sys.stderr)
      return 1
    print(url)
  return 0


def run() -> None:
  """Entry for ``hybridconv wandb-report`` (arguments from ``sys.argv``)."""
  raise SystemExit(main(sys.argv[1:]))


if __name__ == "__main__":
  run()
