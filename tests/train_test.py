"""train_and_evaluate end to end on tiny gratings: workdir layout, checkpoints, resumption."""

from __future__ import annotations

import json
import os

import numpy as np
import orbax.checkpoint as ocp
import pytest

from hybridconv import tracking
from hybridconv.training import faults, preemption, train
from tests.conftest import make_tiny_config


def _config(variant="hybrid", **overrides):
  return make_tiny_config(variant, **overrides)


def _saved_arrays(workdir: str, step: int) -> dict[str, np.ndarray]:
  """Every array of checkpoint ``step``'s train state, by path."""
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  restored = ocp.StandardCheckpointer().restore(path)
  flat = {}

  def visit(prefix, node):
    if isinstance(node, dict):
      for key, value in node.items():
        visit(f"{prefix}/{key}", value)
    elif isinstance(node, (list, tuple)):
      for i, value in enumerate(node):
        visit(f"{prefix}/{i}", value)
    elif node is not None:
      flat[prefix] = np.asarray(node)

  visit("", restored)
  return flat


_FULL_RUNS = {}


def _full_run(pipeline, tmp_path_factory):
  """An uninterrupted run per data pipeline, shared by the tests of this module."""
  if pipeline not in _FULL_RUNS:
    workdir = str(tmp_path_factory.mktemp(f"full_{pipeline}"))
    final = train.train_and_evaluate(_config(**{"data.pipeline": pipeline}), workdir)
    _FULL_RUNS[pipeline] = (workdir, final)
  return _FULL_RUNS[pipeline]


@pytest.fixture
def full_run(tmp_path_factory):
  return _full_run("device", tmp_path_factory)


@pytest.mark.slow
def test_workdir_layout_and_metrics(full_run):
  workdir, final = full_run
  assert final["step"] == 8
  assert 0.0 <= final["eval/accuracy"] <= 1.0 and final["eval/loss"] > 0
  assert "eval/top5_accuracy" not in final  # 4 classes: top-5 is meaningless
  assert final["images_per_sec"] > 0
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    assert json.load(f)["model"]["first_layer"] == "hybrid"
  events = tracking.read_events(workdir)
  train_events = [e for e in events if "train/loss" in e]
  eval_events = [e for e in events if "eval/accuracy" in e]
  assert [e["step"] for e in train_events] == [2, 4, 6, 8]
  assert [e["step"] for e in eval_events] == [8]
  assert all(
    {"train/accuracy", "train/learning_rate", "train/grad_norm", "epoch"} <= e.keys()
    for e in train_events
  )
  assert all("images_per_sec" in e for e in train_events[1:])
  assert eval_events[-1]["eval/accuracy"] == final["eval/accuracy"]
  # checkpoint.every="0.5 epochs" (4 steps), keep=2: steps 4 and 8 remain.
  assert sorted(
    int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()
  ) == [4, 8]
  with open(
    os.path.join(workdir, "checkpoints", "8", "metadata", "metadata"), encoding="utf-8"
  ) as f:
    metadata = json.load(f)
  assert metadata["step"] == 8 and metadata["device_count"] >= 1


@pytest.mark.parametrize("pipeline", ["device", "streaming"])
@pytest.mark.slow
def test_sigterm_saves_and_resume_is_bitwise_identical(
  pipeline, tmp_path, tmp_path_factory, monkeypatch
):
  full_dir, full_final = _full_run(pipeline, tmp_path_factory)
  workdir = str(tmp_path)
  config = _config(**{"data.pipeline": pipeline})
  # SIGTERM while the scalars of step 2 are being written (faults.py test hook).
  monkeypatch.setenv(faults.ENV_VAR, "sigterm@log:2")
  with pytest.raises(preemption.Preempted) as stop:
    train.train_and_evaluate(config, workdir)
  assert stop.value.step == 2 and stop.value.signal_name == "SIGTERM"
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "2"))

  monkeypatch.delenv(faults.ENV_VAR)
  resumed = train.train_and_evaluate(config, workdir)
  assert resumed["step"] == 8
  events = tracking.read_events(workdir)
  assert [e["step"] for e in events if "train/loss" in e] == [2, 4, 6, 8]
  resumed_arrays, full_arrays = _saved_arrays(workdir, 8), _saved_arrays(full_dir, 8)
  assert resumed_arrays.keys() == full_arrays.keys()
  for key, value in full_arrays.items():
    np.testing.assert_array_equal(resumed_arrays[key], value, err_msg=key)
  assert resumed["eval/accuracy"] == full_final["eval/accuracy"]
  assert resumed["eval/loss"] == full_final["eval/loss"]


@pytest.mark.slow
def test_rerun_of_a_finished_run_only_evaluates(full_run):
  workdir, final = full_run
  again = train.train_and_evaluate(_config(), workdir)
  assert again["step"] == 8
  assert again["eval/accuracy"] == final["eval/accuracy"]
