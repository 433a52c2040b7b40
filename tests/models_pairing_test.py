"""Paired by construction: swapping one layer's kernel source leaves the other layers bit-identical.

For every model of the zoo and every first-layer source (and for
``hybridconv.nn.convert``), the initial values of all layers but the swapped one
depend only on the seed and their paths, so arms of a study that share a seed
differ only in the layer they swap.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from hybridconv import models
from hybridconv.nn import convert
from hybridconv.nn.layer_rngs import layer_rngs

# Every kind of source, including the ones that draw nothing (fixed) and the ones
# that draw more than once (hybrid) or change the layer's structure (bankmix).
FIRST_LAYER_SOURCES = (
  "free",
  "free:init=gabor",
  "gabor",
  "fixed",
  "fixed:dct",
  "random",
  "hybrid",
  "bankmix",
  {"source": "bankmix", "bank": "random", "num_filters": 4},
)
# (model, image shape, width): the smallest inputs and widths each model accepts.
MODEL_SHAPES = {
  "simple_cnn": ((28, 28, 1), 0.25),
  "alexnet": ((63, 63, 3), 0.0625),
  "alexnet_small": ((16, 16, 3), 0.125),
  "resnet20": ((8, 8, 3), 0.25),
  "resnet56": ((8, 8, 3), 0.25),
  "resnet18": ((16, 16, 3), 0.125),
  "resnet34": ((16, 16, 3), 0.125),
  "resnet50": ((16, 16, 3), 0.125),
  "resnet101": ((16, 16, 3), 0.0625),
  "resnet152": ((16, 16, 3), 0.0625),
}


def _initial_values(model: nnx.Module) -> dict[str, np.ndarray]:
  """Every variable's initial value by path (parameters, frozen kernels, BatchNorm statistics)."""
  leaves = jax.tree_util.tree_leaves_with_path(nnx.state(model))
  return {jax.tree_util.keystr(path): _array(value) for path, value in leaves}


def _array(value) -> np.ndarray:
  if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):  # dropout streams
    return np.asarray(jax.random.key_data(value))
  return np.asarray(value)


def _build(name: str, first_layer, seed: int = 3) -> nnx.Module:
  image_shape, width = MODEL_SHAPES[name]
  key = jax.random.key(seed)
  return models.MODELS[name](
    10,
    image_shape,
    first_layer=first_layer,
    width=width,
    kernel_seed=seed,
    rngs=nnx.Rngs(params=key, dropout=jax.random.fold_in(key, 1)),
  )


def _outside(values: dict[str, np.ndarray], layer: str) -> dict[str, np.ndarray]:
  return {path: value for path, value in values.items() if not path.startswith(f"['{layer}']")}


def test_every_model_has_its_shape():
  assert set(MODEL_SHAPES) == set(models.MODELS)


@pytest.mark.parametrize("name", sorted(MODEL_SHAPES))
def test_swapping_the_first_layer_leaves_every_other_layer_bit_identical(name):
  reference = _outside(_initial_values(_build(name, "free")), "conv1")
  assert len(reference) > 4
  for source in FIRST_LAYER_SOURCES[1:]:
    other = _outside(_initial_values(_build(name, source)), "conv1")
    assert other.keys() == reference.keys(), source
    for path, value in reference.items():
      np.testing.assert_array_equal(other[path], value, err_msg=f"{name} {source}: {path}")


def test_the_seed_still_changes_every_drawn_layer():
  first = _initial_values(_build("simple_cnn", "free", 0))
  second = _initial_values(_build("simple_cnn", "free", 1))
  drawn = [path for path in first if "kernel" in path]
  assert len(drawn) == 4
  for path in drawn:
    assert not np.array_equal(first[path], second[path]), path


def test_layers_of_one_model_draw_different_values():
  values = _initial_values(_build("resnet20", "free"))
  kernels = [v for path, v in values.items() if "kernel" in path and v.shape[:2] == (3, 3)]
  same_shape = [v for v in kernels if v.shape == kernels[-1].shape]
  assert len(same_shape) > 2
  assert len({v.tobytes() for v in same_shape}) == len(same_shape)


def test_layer_rngs_depend_on_the_path_only():
  rngs = nnx.Rngs(params=0, dropout=1)
  before = layer_rngs(rngs, "conv2").params()
  rngs.params()  # another layer draws
  rngs.params()
  after = layer_rngs(rngs, "conv2").params()
  np.testing.assert_array_equal(jax.random.key_data(before), jax.random.key_data(after))
  other = layer_rngs(rngs, "conv3").params()
  assert not np.array_equal(jax.random.key_data(before), jax.random.key_data(other))


class _ThreeConvs(nnx.Module):
  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 8, kernel_size=(7, 7), rngs=rngs)
    self.conv2 = nnx.Conv(8, 8, kernel_size=(5, 5), rngs=rngs)
    self.conv3 = nnx.Conv(8, 8, kernel_size=(5, 5), rngs=rngs)


CONVERT_SOURCES = ("free", "free:init=gabor", "gabor", "fixed", "random", "hybrid")


@pytest.mark.parametrize("later", ["random", "hybrid"])
def test_convert_leaves_the_other_converted_convs_bit_identical(later):
  def converted(first):
    model = _ThreeConvs(rngs=nnx.Rngs(0))
    spec = {"conv1": first, "conv2": later, "conv3": "random"}
    model, _ = convert(model, spec, rngs=nnx.Rngs(params=5))
    return _outside(_initial_values(model), "conv1")

  reference = converted(CONVERT_SOURCES[0])
  for first in CONVERT_SOURCES[1:]:
    other = converted(first)
    assert other.keys() == reference.keys()
    for path, value in reference.items():
      np.testing.assert_array_equal(other[path], value, err_msg=f"{first}: {path}")


def test_runs_record_that_their_arms_are_paired(tmp_path):
  from hybridconv.training import provenance, train  # noqa: PLC0415
  from tests.conftest import make_tiny_config  # noqa: PLC0415

  fingerprints = {}
  for source in ("free", "fixed", "random"):
    workdir = str(tmp_path / source)
    train.train_and_evaluate(make_tiny_config(source, **{"train_for": "1 steps"}), workdir)
    fingerprints[source] = provenance.read_initial_values(workdir)
  layers = set(fingerprints["free"])
  assert {"conv1", "conv2", "bn1", "fc1", "fc2"} <= layers
  for source in ("fixed", "random"):
    assert fingerprints[source].keys() == layers
    differ = {
      layer for layer in layers if fingerprints[source][layer] != fingerprints["free"][layer]
    }
    assert differ == {"conv1"}, source
