"""Tests of the W&B comparison report builder, offline (building, never saving)."""

from __future__ import annotations

import time

import pytest

from hybridconv.reports import wandb_report

# wandb-workspaces 0.4.13 still uses pydantic v1-style validators.
pytestmark = pytest.mark.filterwarnings("ignore:Pydantic V1 style:DeprecationWarning")


@pytest.fixture(autouse=True)
def no_wandb_server(monkeypatch):
  monkeypatch.delenv("WANDB_API_KEY", raising=False)
  monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there


def test_report_builds_offline_with_curves_filter_grids_and_gabor_likeness():
  report = wandb_report.build_report(
    "me",
    "hybridconv",
    layers=("conv1", "conv2"),
    run_filter="Config('model.first_layer') = 'gabor'",
  )
  assert report.entity == "me" and report.project == "hybridconv"
  grids = [block for block in report.blocks if hasattr(block, "panels")]
  assert len(grids) == 3
  assert all(g.runsets[0].project == "hybridconv" and g.runsets[0].entity == "me" for g in grids)
  assert grids[0].runsets[0].filters == "Config('model.first_layer') = 'gabor'"
  specs = wandb_report.panel_specs(report)
  metrics = [
    m for s in specs if s["view_type"] == "Run History Line Plot" for m in s["config"]["metrics"]
  ]
  assert {
    "eval/accuracy",
    "train/loss",
    "gabor_fit/conv1/r2_median",
    "gabor_fit/conv2/r2_median",
    "gabor/conv1/drift/theta",
  } <= set(metrics)
  media = [s["config"] for s in specs if s["view_type"] == "Media Browser"]
  assert [m["media_keys"] for m in media] == [["filters/conv1"], ["filters/conv2"]]
  assert all(m["grid_settings"] == {"x_axis": "run", "y_axis": "step"} for m in media)


def test_saving_without_a_reachable_server_returns_none_quickly():
  report = wandb_report.build_report("me", "hybridconv")
  start = time.monotonic()
  assert wandb_report.save_report(report, timeout=1.0) is None
  assert time.monotonic() - start < 5
  assert not wandb_report.server_reachable("http://127.0.0.1:9", timeout=0.5)


@pytest.mark.parametrize(
  "entity, project, layers, message",
  [
    ("", "p", ("conv1",), "entity and project must be non-empty"),
    ("me", "p", (), "layers must be non-empty"),
  ],
)
def test_bad_arguments_are_refused(entity, project, layers, message):
  with pytest.raises(ValueError, match=message):
    wandb_report.build_report(entity, project, layers=layers)


def test_command_line_builds_without_saving(capsys):
  assert wandb_report.main(["--entity", "me", "--project", "p", "--layers", "conv1,conv2"]) == 0
  assert "with 9 panels" in capsys.readouterr().out


def test_study_report_groups_runs_by_the_factors_offline():
  report = wandb_report.build_study_report(
    "me", "hybridconv", group="kernel_study", factors=["model.first_layer", "data.train_size"]
  )
  grids = [block for block in report.blocks if hasattr(block, "panels")]
  assert len(grids) == 3
  for panel_grid in grids:
    runset = panel_grid.runsets[0]
    assert runset.groupby == ["config.model.first_layer", "config.data.train_size"]
    assert runset.filters == "Metric('Group') = 'kernel_study'"
  specs = wandb_report.panel_specs(report)
  metrics = {
    m for s in specs if s["view_type"] == "Run History Line Plot" for m in s["config"]["metrics"]
  }
  assert {"eval/accuracy", "gabor_fit/conv1/r2_median", "gabor_fit/conv1/null_r2_median"} <= metrics
  assert any(s["view_type"] == "Bar Chart" for s in specs)
  with pytest.raises(ValueError, match="factors must be config keys other than 'seed'"):
    wandb_report.build_study_report("me", "p", group="g", factors=["seed"])
  with pytest.raises(ValueError, match="group must be non-empty"):
    wandb_report.build_study_report("me", "p", group="", factors=["model.first_layer"])


def test_a_save_that_did_not_happen_is_one_error_line_and_a_failure(capsys, monkeypatch):
  monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
  args = ["--entity", "me", "--project", "p", "--save"]
  assert wandb_report.main(args) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert err == ["error: the report was not saved: the W&B server is not reachable"]


def test_bad_arguments_on_the_command_line_are_one_error_line(capsys):
  assert wandb_report.main(["--entity", "", "--project", "p"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: ") and "non-empty" in err[0]
