"""The committed study definitions: grids, fair widths, a CIFAR-10 point under mock_data."""

from __future__ import annotations

import importlib
import json
import os
from unittest import mock

import jax
import jax.numpy as jnp
import ml_collections
import pytest
import tensorflow_datasets as tfds
from flax import nnx

from hybridconv import configlib, models
from hybridconv.studies import grid as grid_lib
from hybridconv.studies import plan
from hybridconv.training import train

STUDY = "experiments/kernel_study/study.py"


def _module(name):
  return importlib.import_module(f"experiments.kernel_study.{name}")


def _first_layer(model_config, image_shape):
  """The first conv's (output channels, kernel shape), traced (nothing is computed)."""

  def run():
    model = models.build_model(
      model_config, num_classes=10, image_shape=image_shape, rngs=nnx.Rngs(0), seed=0
    )
    conv = models.conv_layers(model)["conv1"]
    return conv.kernel(), conv(jnp.zeros((1, *image_shape)))

  kernel, out = jax.eval_shape(run)
  return out.shape[-1], kernel.shape


def _first_layer_shape(model_config, image_shape):
  return _first_layer(model_config, image_shape)[1]


def _all_budgets(study, monkeypatch, extra_arm=None):
  monkeypatch.setattr(study, "BUDGETS", {size: 1.0 for size in study.SIZES})
  monkeypatch.setattr(study, "LARGEST_SIZE_EXTRA_ARM", extra_arm)
  return list(study.study())


def test_fashion_mnist_study_pairs_every_arm_and_seed_with_unique_names(monkeypatch):
  study = _module("study")
  points = _all_budgets(study, monkeypatch, extra_arm="hybrid")
  largest = study.design.ALL_IMAGES
  expected = sum(
    study.SEEDS[size] * (6 if size == largest else len(study.ARMS)) for size in study.SIZES
  )
  assert len(points) == expected
  factors = grid_lib.primary_factors(points)
  assert factors == ["data.train_size", "seed", "arm"]
  names = {plan.point_name(p, factors) for p in points}
  assert len(names) == len(points)
  by_cell = {}
  for p in points:
    by_cell.setdefault((p["data.train_size"], p["arm"]), set()).add(p["seed"])
  assert all(seeds == set(range(study.SEEDS[size])) for (size, _), seeds in by_cell.items())
  assert {arm for size, arm in by_cell if size == largest} == {*study.LARGEST_SIZE_ARMS, "hybrid"}
  robust = {p["data.train_size"] for p in points if p["robustness.after_training"]}
  assert robust == {1_000, largest}


def test_a_size_without_a_chosen_budget_has_no_points(monkeypatch):
  study = _module("study")
  monkeypatch.setattr(study, "BUDGETS", {100: 10.0})
  points = list(study.study())
  assert {p["data.train_size"] for p in points} == {100}
  assert all(p["train_for"] == "10 epochs" and p["eval_every"] == "1.25 epochs" for p in points)


def test_the_study_budgets_are_the_committed_pilot_choice():
  study = _module("study")
  path = "experiments/kernel_study/results/pilot/budgets.json"
  chosen = {}
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      chosen = json.load(f)
  assert {int(size): choice["epochs"] for size, choice in chosen.items()} == study.BUDGETS


@pytest.mark.parametrize("arm", list(_module("study").ARMS))
def test_every_arm_is_a_7x7_layer_of_32_channels(arm):
  study = _module("study")
  config = study.get_config()
  config.model.first_layer = study.ARMS[arm]
  channels, kernel = _first_layer(config.model, (28, 28, 1))
  assert channels == 32 and kernel[:2] == (7, 7)
  # a depthwise bank has one input channel and its own size (8 master-key filters)
  assert kernel[2:] == ((1, 8) if arm == "master_key_mix" else (1, 32))


@pytest.mark.parametrize(
  "model, shape", [("resnet20", (3, 3, 3, 16)), ("alexnet_small", (5, 5, 3, 64))]
)
@pytest.mark.slow
def test_cifar_arms_fill_the_stem_width(model, shape):
  cifar = _module("cifar10")
  config = cifar.get_config(model)
  points = list(cifar.study(model))
  assert len(points) == len(cifar.arms(model)) * 4 * 3
  for source in cifar.arms(model).values():
    config.model.first_layer = source
    assert _first_layer_shape(config.model, (32, 32, 3)) == shape


@pytest.mark.slow
def test_a_cifar_point_trains_under_mock_data(tmp_path):
  cifar = _module("cifar10")
  config = cifar.get_config("resnet20")
  point = next(p for p in cifar.study("resnet20") if p["model.first_layer"] != "free")
  settings = {
    **point,
    "data.train_size": 40,
    "batch_size": 20,
    "eval_batch_size": 20,
    "train_for": "2 steps",
    "model.width": 0.25,
    "tracking.wandb.mode": "disabled",
    "tracking.filters_every": "never",
    "cpu_devices": 1,
    "data.data_dir": str(tmp_path / "no-tfds"),
  }
  configlib.apply_overrides(config, settings)
  config.lock()
  mocked = tfds.testing.mock_data(num_examples=60, policy=tfds.testing.MockPolicy.USE_CODE)
  prepared = mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True)
  with mocked, prepared:
    final = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert final["step"] == 2 and 0.0 <= final["eval/accuracy"] <= 1.0
  subset = json.loads((tmp_path / "run" / "train_subset.json").read_text())
  assert subset["num_examples"] == 40 and subset["split_size"] == 60


def test_random_features_study_freezes_every_conv():
  study = _module("random_features")
  points = list(study.study())
  assert len(points) == 6
  config = study.get_config()
  config.model.kernels = ml_collections.ConfigDict({"*": "random"})
  model = nnx.eval_shape(
    lambda: models.build_model(
      config.model, num_classes=10, image_shape=(28, 28, 1), rngs=nnx.Rngs(0), seed=0
    )
  )
  params = nnx.state(model, nnx.Param)
  names = ["/".join(map(str, path)) for path, _ in nnx.to_flat_state(params)]
  assert names and not any("kernel" in n and "conv" in n for n in names), names[:5]
  assert any("bn" in n or "norm" in n for n in names)


def test_the_extra_largest_size_arm_follows_the_rule_once_its_runs_exist():
  extra = _module("extra_arm")
  study = _module("study")
  assert (
    extra.choose({"free": 0.9, "gabor": 0.95, "hybrid": 0.91, "fixed_dct": 0.92}) == "fixed_dct"
  )
  means, count = extra.validation_means("experiments/kernel_study/results/fashion_mnist")
  if count < len(study.arms_at(10_000)) * study.SEEDS[10_000]:
    assert study.LARGEST_SIZE_EXTRA_ARM is None  # not chosen before its evidence exists
  else:
    assert study.LARGEST_SIZE_EXTRA_ARM == extra.choose(means)


def test_the_budget_check_pairs_with_the_main_study_at_twice_its_budget():
  # Seed s of the check trains the same arm on the same subset from the same initial values
  # as the main study's seed s at 10,000 images: only the budget and its cadences differ.
  check, main = _module("budget_check"), _module("study")
  main_points = {(p["seed"], p["arm"]): p for p in main.study() if p["data.train_size"] == 10_000}
  points = list(check.study())
  assert len(points) == check.SEEDS * len(check.ARMS) and check.ARMS[0] == "free"
  for point in points:
    reference = main_points[(point["seed"], point["arm"])]
    differ = {k for k in point if point[k] != reference[k]}
    assert differ <= {
      "train_for",
      "optim.warmup",
      "eval_every",
      "checkpoint.every",
      "log_every",
      "tracking.scalars_every",
      "tracking.filters_every",
    }
    assert point["train_for"] == "24 epochs" and reference["train_for"] == "12 epochs"


def test_the_budget_check_table_pairs_each_arm_with_the_reference_at_both_budgets():
  check = _module("budget_check")
  reference, first, second = check.ARMS
  seeds = range(check.SEEDS)
  # The first arm leads by 1 point at 12 epochs and by 0.5 at 24; the second by 0.2 at both.
  main = {reference: {s: 0.80 + s / 100 for s in seeds}}
  main[first] = {s: main[reference][s] + 0.01 for s in seeds}
  main[second] = {s: main[reference][s] + 0.002 + 0.001 * (s % 2) for s in seeds}
  doubled = {arm: {s: v + 0.001 for s, v in values.items()} for arm, values in main.items()}
  doubled[first] = {s: doubled[reference][s] + 0.005 for s in seeds}
  lines = check.side_by_side(main, doubled)
  row = next(line for line in lines if line.startswith(f"| `{first}`"))
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert cells[1].startswith("+1.00 (") and cells[1].endswith("4/4 ahead")
  assert cells[2].startswith("+0.50 (") and cells[3].startswith("-0.50 (")
  row = next(line for line in lines if line.startswith(f"| `{second}`"))
  assert [c.strip() for c in row.strip("|").split("|")][3].startswith("+0.00 (")
  assert f"`{reference}` +0.10" in lines[-1]


def test_the_budget_check_report_refuses_a_stray_argument_in_one_line(capsys):
  with pytest.raises(SystemExit) as stop:
    _module("budget_check").main(["--sizes=1000"])
  assert stop.value.code == 2
  assert (
    capsys.readouterr()
    .err.strip()
    .splitlines()[-1]
    .endswith("error: unrecognized arguments: --sizes=1000")
  )
