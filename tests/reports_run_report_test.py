"""Tests of the run report on a workdir written by the tracking logger from a tiny model."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from flax import nnx
from PIL import Image

from hybridconv import nn, tracking
from hybridconv.kernels import gabor
from hybridconv.models import SimpleCNN
from hybridconv.reports import run_report
from hybridconv.tracking import jsonl_logger

STEPS = (0, 50, 100)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A run of three summaries: free conv1 kernels morph into Gabors, Gabor thetas turn.

  The parameter changes are made by hand (no training): enough for the
  report's format, and a known answer for its R^2 and drift sections.
  """
  workdir = str(tmp_path_factory.mktemp("run"))
  model = SimpleCNN(10, (28, 28, 1), first_layer="hybrid", width=0.25, rngs=nnx.Rngs(0))
  logger = jsonl_logger.JsonlLogger(workdir)
  logger.log_config(
    {
      "model": {"name": "simple_cnn", "first_layer": "hybrid", "width": 0.25},
      "data": {"name": "fashion_mnist", "train_size": 1000},
      "seed": 0,
    }
  )
  tracker = tracking.FilterTracker(logger, gabor_fit=True)
  gabor_group, free_group = nn.kernel_groups(model.conv1)
  free = free_group.module.kernel
  start = np.asarray(free[...])
  theta = np.linspace(0, np.pi, 4, endpoint=False)
  target = np.asarray(gabor.gabor_real((5, 5), theta, 0.2, 1.5, 1.0, 0.0))[:, :, None, :]
  target = target * np.linalg.norm(start) / np.linalg.norm(target)
  for i, step in enumerate(STEPS):
    blend = i / (len(STEPS) - 1)
    free[...] = (1 - blend) * start + blend * target
    logger.log_scalars(step, {"train/loss": 2.0 - 0.5 * i, "train/accuracy": 0.3 + 0.2 * i})
    if step:
      logger.log_scalars(step, {"eval/loss": 1.8 - 0.4 * i, "eval/accuracy": 0.4 + 0.2 * i})
    tracker(model, step)
    gabor_group.module.theta[...] = gabor_group.module.theta[...] + 0.1
  logger.close()
  tracking.write_animations(workdir)
  return workdir


@pytest.mark.slow
def test_report_writes_markdown_whose_figures_and_links_exist(run_dir):
  path = run_report.write_report(run_dir)
  assert path == os.path.join(run_dir, "REPORT.md")
  text = open(path).read()
  for heading in (
    "## Configuration",
    "## Results",
    "## Filters",
    "### `conv1`",
    "### `conv2`",
    "## Gabor parameters",
    "## Gabor-likeness of learned kernels",
  ):
    assert heading in text
  links = re.findall(r"\]\(([^)]+)\)", text)
  assert {
    "report/curves.png",
    "report/filters_conv1.png",
    "report/gabor_conv1.png",
    "report/gabor_drift_conv1.png",
    "report/gabor_likeness.png",
    "filters/conv1.gif",
    "filters_change/conv1/step_0000100.png",
  } <= set(links)
  for link in links:
    assert os.path.exists(os.path.join(run_dir, link)), link
  for link in links:
    if link.endswith(".png"):
      figure = np.asarray(Image.open(os.path.join(run_dir, link)).convert("L"), float)
      assert figure.shape[0] > 100 and figure.std() > 5, link  # drawn, not blank
  assert '| `model.first_layer` | `"hybrid"` |' in text


@pytest.mark.slow
def test_report_numbers_come_from_the_logged_history(run_dir):
  text = open(run_report.write_report(run_dir)).read()
  metrics = tracking.read_metrics(run_dir)
  assert f"| `eval/accuracy` | 100 | {0.8:.4g} | {0.8:.4g} |" in text
  first, last = metrics["gabor_fit/conv1/r2_median"][1][[0, -1]]
  assert last > 0.95 > first  # the free kernels became Gabors
  assert "| `conv1` | first | 0 | " in text
  row = re.search(r"\| `conv1` \| last \| 100 \| [^|]+ \| ([^|]+) \|", text)
  assert float(row.group(1)) == pytest.approx(last, rel=1e-3)
  drift = metrics["gabor/conv1/drift/theta"][1]
  np.testing.assert_allclose(drift, [0.0, 0.1, 0.2], atol=1e-5)
  assert f"| theta | {drift[-1]:.4g} |" in text


@pytest.mark.slow
def test_command_line_entry_point(run_dir, capsys):
  assert run_report.main(["--workdir", run_dir]) == 0
  assert capsys.readouterr().out.strip() == os.path.join(run_dir, "REPORT.md")


def test_a_directory_without_a_run_is_refused(tmp_path, capsys):
  with pytest.raises(ValueError, match="holds no run"):
    run_report.write_report(str(tmp_path))
  assert run_report.main(["--workdir", str(tmp_path / "missing")]) == 2
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert line.startswith("error: ") and "missing" in line


@pytest.fixture
def figures(monkeypatch):
  """Every matplotlib figure the report saves, by file name."""
  saved = {}
  save = run_report.plots._save

  def keep(fig, path):
    saved[os.path.basename(path)] = fig
    return save(fig, path)

  monkeypatch.setattr(run_report.plots, "_save", keep)
  return saved


@pytest.mark.slow
def test_every_plot_carries_axis_labels(run_dir, figures):
  run_report.write_report(run_dir)
  assert {"curves.png", "gabor_conv1.png", "gabor_drift_conv1.png", "gabor_likeness.png"} <= set(
    figures
  )
  for name, fig in figures.items():
    for ax in fig.axes:
      if ax.axison:  # filter pictures are images with their axes hidden
        assert ax.get_xlabel() and ax.get_ylabel(), (name, ax.get_title())
  units = {ax.get_xlabel() for ax in figures["gabor_conv1.png"].axes}
  assert {"theta (rad, mod pi)", "frequency (cycles/pixel)", "sigma (pixels)", "psi (rad)"} <= units


@pytest.mark.slow
def test_fixed_gabor_parameters_are_marked_not_drawn_as_distributions(run_dir, figures):
  text = open(run_report.write_report(run_dir)).read()
  # sources.Gabor learns theta and frequency by default; the rest are fixed.
  assert "Fixed (not learned): sigma, gamma, psi." in text
  titles = {ax.get_title(): ax for ax in figures["gabor_conv1.png"].axes}
  assert set(titles) == {
    "conv1 theta",
    "conv1 frequency",
    "conv1 sigma (fixed)",
    "conv1 gamma (fixed)",
    "conv1 psi (fixed)",
  }
  assert not titles["conv1 psi (fixed)"].patches  # no histogram bars, only value ticks
  assert titles["conv1 theta"].patches
  assert "| sigma |" not in text  # no drift row for what cannot drift


@pytest.mark.slow
def test_angle_and_relative_drift_have_separate_axes(run_dir, figures):
  run_report.write_report(run_dir)
  axes = figures["gabor_drift_conv1.png"].axes
  assert len(axes) == 2
  angle, relative = axes
  assert "rad" in angle.get_ylabel() and "relative" in relative.get_ylabel()
  assert [line.get_label() for line in angle.lines] == ["theta"]
  assert [line.get_label() for line in relative.lines] == ["frequency"]


@pytest.mark.slow
def test_gabor_likeness_is_drawn_over_its_null_band(run_dir, figures):
  text = open(run_report.write_report(run_dir)).read()
  metrics = tracking.read_metrics(run_dir)
  null = metrics["gabor_fit/conv1/null_r2_median"][1]
  assert len(null) == len(STEPS)
  (ax,) = figures["gabor_likeness.png"].axes
  labels = [line.get_label() for line in ax.lines]
  assert "conv1 null median" in labels
  np.testing.assert_allclose(ax.lines[labels.index("conv1 null median")].get_ydata(), null)
  assert any(c.get_label() == "conv1 null 25-75%" for c in ax.collections)
  row = re.search(r"\| `conv1` \| last \| 100 \| [^|]+ \| [^|]+ \| ([^|]+) \|", text)
  assert float(row.group(1)) == pytest.approx(null[-1], rel=1e-3)
  assert null[-1] < metrics["gabor_fit/conv1/r2_median"][1][-1]  # Gabors beat their surrogates


@pytest.mark.slow
def test_report_holds_no_absolute_path(run_dir):
  text = open(run_report.write_report(run_dir)).read()
  assert run_dir not in text and "](/" not in text


def test_report_of_a_frozen_first_layer_has_filters_but_no_change_section(tmp_path):
  """Frozen kernels get filter grids but no ``filters_change`` folder; the report copes."""
  model = SimpleCNN(10, (28, 28, 1), first_layer="fixed:gabor", width=0.25, rngs=nnx.Rngs(0))
  logger = jsonl_logger.JsonlLogger(str(tmp_path))
  tracker = tracking.FilterTracker(logger, gabor_fit=False)
  for step in STEPS:
    tracker(model, step)
  logger.close()
  assert os.path.isdir(tmp_path / "filters" / "conv1")
  assert not os.path.exists(tmp_path / "filters_change" / "conv1")
  text = open(run_report.write_report(str(tmp_path))).read()
  assert "### `conv1`" in text
  assert "filters_change/conv1" not in text


def test_the_config_table_says_how_many_training_images(run_dir):
  run_report.write_report(run_dir)
  text = open(os.path.join(run_dir, run_report.REPORT_FILE), encoding="utf-8").read()
  assert re.search(r"data\.train_size.*1000", text)
