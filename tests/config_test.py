"""Configs: every key declared once with a comment, variants, studies, CLI overrides."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest
from flax import nnx

from configs import cifar10, default, fashion_mnist, gratings, imagefolder, imagenet, tiny
from hybridconv import configlib, models
from hybridconv.studies import command as study_cli
from hybridconv.studies import plan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("free", "gabor", "fixed", "random", "hybrid")
VARIANTS = {
  fashion_mnist: [*SOURCES, "hybrid,long", "gabor,resnet20", "free,resnet20,long", None],
  gratings: [*SOURCES, None],
  cifar10: [*SOURCES, "gabor,alexnet_small", "resnet20", None],
  imagenet: [*SOURCES, "gabor,resnet50", "alexnet", None],
  imagefolder: ["free", "gabor,resnet50", None],
  tiny: [*SOURCES, None],
}


def _flat_keys(config, prefix=""):
  keys = set()
  for key, value in config.items():
    if hasattr(value, "items") and key != "kernels":
      keys |= _flat_keys(value, f"{prefix}{key}.")
    else:
      keys.add(prefix + key)
  return keys


def test_default_declares_every_key_once_with_a_comment():
  source = open(os.path.join(ROOT, "configs", "default.py"), encoding="utf-8").read()
  declared = _flat_keys(default.get_config())
  assigned = []
  for line in source.splitlines():
    stripped = line.strip()
    if stripped.startswith("config.") and " = " in stripped:
      target = stripped.split(" = ")[0][len("config.") :]
      assigned.append(target)
      if target in declared:  # a key, not a section header
        assert "  # " in line, f"configs/default.py: {target} has no comment"
  assert len(assigned) == len(set(assigned)), "a key is assigned twice in default.py"
  sections = {k for k in assigned if any(d.startswith(k + ".") for d in declared)}
  assert set(assigned) - sections == declared


# Every config file's every variant.
every_variant = pytest.mark.parametrize(
  ("module", "variant"),
  [(m, v) for m, vs in VARIANTS.items() for v in vs],
  ids=lambda x: getattr(x, "__name__", str(x)).split(".")[-1],
)


@every_variant
def test_variants_only_change_declared_keys(module, variant):
  config = module.get_config(variant) if variant else module.get_config()
  assert _flat_keys(config) == _flat_keys(default.get_config())
  if variant and variant.split(",")[0] in SOURCES:
    assert config.model.first_layer == variant.split(",")[0]


@every_variant
def test_every_variant_survives_the_literal_a_study_hands_its_workers(module, variant):
  config = module.get_config(variant) if variant else module.get_config()
  config.lock()
  configlib.apply_overrides(config, {"tracking.wandb.tags": ("a=1",), "model.kernels": {"*": "x"}})
  again = configlib.from_literal(configlib.to_literal(config))
  assert again.to_dict() == config.to_dict()
  assert again.tracking.wandb.tags == ("a=1",)  # tuples stay tuples
  assert again.is_locked
  with pytest.raises(AttributeError):
    again.no_such_key = 1


def test_to_literal_refuses_a_value_that_is_not_a_literal():
  config = tiny.get_config()
  config.optim.learning_rate = float("inf")
  with pytest.raises(ValueError, match="not a Python literal"):
    configlib.to_literal(config)


# (image shape, classes) of each config's dataset, to build its models abstractly.
DATA_SHAPES = {
  fashion_mnist: ((28, 28, 1), 10),
  gratings: ((32, 32, 1), 8),
  cifar10: ((32, 32, 3), 10),
  imagenet: ((224, 224, 3), 1000),
  tiny: ((16, 16, 1), 4),
  imagefolder: ((224, 224, 3), 10),
}


@every_variant
@pytest.mark.slow
def test_every_variant_builds_its_model(module, variant):
  config = module.get_config(variant) if variant else module.get_config()
  image_shape, num_classes = DATA_SHAPES[module]
  model = nnx.eval_shape(
    lambda: models.build_model(
      config.model, num_classes=num_classes, image_shape=image_shape, rngs=nnx.Rngs(0)
    )
  )
  assert model is not None


@pytest.mark.parametrize("module", list(VARIANTS), ids=lambda m: m.__name__.split(".")[-1])
def test_unknown_variant_names_the_variants(module):
  with pytest.raises(ValueError, match=r"unknown config variant 'gabbor'.*'gabor'"):
    module.get_config("gabbor")


def test_fashion_mnist_quickstart_is_the_default_variant():
  config = fashion_mnist.get_config()
  assert (config.data.name, config.model.name, config.model.first_layer) == (
    "fashion_mnist",
    "simple_cnn",
    "hybrid",
  )
  assert config.train_for == "3 epochs"


@pytest.mark.parametrize(
  "spec", ["configs/fashion_mnist.py:hybrid", "configs/gratings.py", "configs/cifar10.py:free"]
)
def test_study_points_apply_to_the_locked_config(spec, monkeypatch):
  monkeypatch.chdir(ROOT)
  study = plan.load_study(spec, {}, {})
  points = study.points
  assert len(points) == len({tuple(sorted(p.items())) for p in points}), "duplicate points"
  assert len(set(study.names)) == len(study.names) == len(study.configs)


def test_apply_overrides_refuses_unknown_keys():
  config = default.get_config()
  config.lock()
  configlib.apply_overrides(config, {"optim.learning_rate": 0.5, "seed": 3})
  assert (config.optim.learning_rate, config.seed) == (0.5, 3)
  with pytest.raises(
    ValueError, match="override .optim.learnig_rate.: config.optim has no key .learnig_rate."
  ):
    configlib.apply_overrides(config, {"optim.learnig_rate": 0.1})


def test_point_command_round_trips_values():
  command = plan.point_command(
    "configs/tiny.py",
    "/w",
    {"seed": 2, "model.first_layer": "gabor", "optim.step_at": ("1 epoch", "50%")},
  )
  assert command[-3:] == [
    "--config.seed=2",
    "--config.model.first_layer=gabor",
    "--config.optim.step_at=('1 epoch', '50%')",
  ]
  assert ast.literal_eval(command[-1].split("=", 1)[1]) == ("1 epoch", "50%")


def test_wandb_yaml_is_a_grid_over_the_factors():
  yaml = pytest.importorskip("yaml")
  points = [{"seed": 0}, {"seed": 1}]
  sweep = yaml.safe_load(
    study_cli.wandb_sweep_yaml("configs/tiny.py:gabor", "/runs/s", points, {"train_for": "4 steps"})
  )
  assert sweep["method"] == "grid"
  assert sweep["parameters"] == {"seed": {"values": [0, 1]}}
  assert sweep["command"][-1] == "${args_no_hyphens}"
  assert "--config=configs/tiny.py:gabor" in sweep["command"]
  assert "--config.train_for=4 steps" in sweep["command"]


def _main(*args):
  return subprocess.run(
    [sys.executable, "-m", "hybridconv.main", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )


def test_cli_refuses_unknown_override_key(tmp_path):
  result = _main("--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.optim.lr=0.1")
  assert result.returncode != 0
  assert "config.optim has no key 'lr'; its keys: b1" in result.stderr
  assert not os.listdir(tmp_path)


def test_cli_refuses_unknown_variant(tmp_path):
  result = _main("--config=configs/fashion_mnist.py:gabbor", f"--workdir={tmp_path}")
  assert result.returncode != 0
  assert "unknown config variant 'gabbor'" in result.stderr


def test_the_default_config_names_every_kernel_source():
  from hybridconv.nn import sources  # noqa: PLC0415

  with open(os.path.join(ROOT, "configs", "default.py"), encoding="utf-8") as f:
    (line,) = [line for line in f if "config.model.first_layer =" in line]
  comment = line.split("#", 1)[1]
  assert all(name in comment for name in sources.SOURCE_NAMES), comment
