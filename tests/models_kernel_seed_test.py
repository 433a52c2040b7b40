"""Random kernels follow the run's seed unless the source pins one (seed_random_source)."""

from __future__ import annotations

import ml_collections
import numpy as np
from flax import nnx

from hybridconv import models
from hybridconv.models import layer_specs
from hybridconv.nn import sources


def _model_config(first_layer, kernels=None):
  return ml_collections.ConfigDict(
    {
      "name": "simple_cnn",
      "first_layer": first_layer,
      "kernels": kernels or {},
      "width": 0.25,
      "first_kernel_size": 0,
    }
  )


def _kernel(model, layer="conv1"):
  return np.asarray(models.conv_layers(model)[layer].kernel())


def _build(first_layer, seed, kernels=None):
  return models.build_model(
    _model_config(first_layer, kernels),
    num_classes=10,
    image_shape=(28, 28, 1),
    rngs=nnx.Rngs(0),
    seed=seed,
  )


def test_unseeded_random_kernels_change_with_the_run_seed():
  assert not np.allclose(_kernel(_build("random", 0)), _kernel(_build("random", 1)))
  np.testing.assert_array_equal(_kernel(_build("random", 1)), _kernel(_build("random", 1)))


def test_random_with_its_own_seed_is_the_same_draw_for_every_run_seed():
  np.testing.assert_array_equal(_kernel(_build("random:7", 0)), _kernel(_build("random:7", 5)))


def test_random_layers_of_one_run_differ_from_each_other():
  model = _build("free", 0, kernels={"*": "random"})
  first, second = _kernel(model, "conv1"), _kernel(model, "conv2")
  # same per-filter size would otherwise repeat the same numbers; compare a common slice
  assert not np.allclose(first[:, :, 0, :4], second[:, :, 0, :4])


def test_random_groups_of_a_hybrid_layer_and_random_banks_follow_the_seed():
  hybrid = {"source": "hybrid", "groups": [["random", 0.5], ["free", 0.5]]}
  assert not np.allclose(_kernel(_build(hybrid, 0))[..., :4], _kernel(_build(hybrid, 1))[..., :4])
  bank = {"source": "fixed", "bank": "random", "options": {"num": 8}}
  assert not np.allclose(_kernel(_build(bank, 0)), _kernel(_build(bank, 1)))
  pinned = {"source": "fixed", "bank": "random", "options": {"num": 8, "seed": 3}}
  np.testing.assert_array_equal(_kernel(_build(pinned, 0)), _kernel(_build(pinned, 1)))


def test_derived_seed_is_stable_and_depends_on_seed_and_name():
  assert layer_specs.derived_seed(0, "conv1") == GOLDEN_CONV1_SEED0
  assert layer_specs.derived_seed(0, "conv1") != layer_specs.derived_seed(1, "conv1")
  assert layer_specs.derived_seed(0, "conv1") != layer_specs.derived_seed(0, "conv2")
  seeded = layer_specs.seed_random_source(sources.parse("random"), 0, "conv1")
  assert seeded == sources.Random(seed=GOLDEN_CONV1_SEED0)
  assert layer_specs.seed_random_source(sources.parse("random:4"), 0, "conv1").seed == 4


def test_without_a_run_seed_an_unseeded_random_source_draws_from_seed_zero():
  specs = layer_specs.resolve_sources(("conv1",), first_layer="random")
  assert specs["conv1"] == sources.Random(seed=None)
  model = models.SimpleCNN(10, (28, 28, 1), first_layer="random", width=0.25, rngs=nnx.Rngs(0))
  pinned = models.SimpleCNN(10, (28, 28, 1), first_layer="random:0", width=0.25, rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(_kernel(model), _kernel(pinned))


GOLDEN_CONV1_SEED0 = 1484583734  # sha256("0/conv1")[:4], little-endian, 31 bits
