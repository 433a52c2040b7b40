"""Free kernels that start from a bank or an array: 'free:init=gabor' and Free(init=array)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from hybridconv.kernels import banks
from hybridconv.models import layer_specs
from hybridconv.nn import KernelConv, sources


def test_string_and_dict_name_the_same_source():
  assert sources.parse("free:init=gabor") == sources.Free(init="gabor")
  assert sources.parse({"source": "free", "init": "dct"}) == sources.Free(init="dct")
  assert sources.parse("free") == sources.Free()
  assert layer_specs.resolve_sources(["conv1", "conv2"], first_layer="free:init=gabor") == {
    "conv1": sources.Free(init="gabor"),
    "conv2": sources.Free(),
  }


@pytest.mark.parametrize("options", [{}, {"num_orientations": 4, "num_scales": 1}])
def test_gabor_init_is_the_fixed_gabor_bank_then_learned(options):
  free = KernelConv(3, 8, 5, source=sources.Free(init="gabor", options=options), rngs=nnx.Rngs(0))
  fixed = KernelConv(3, 8, 5, source=sources.Fixed("gabor", options=options), rngs=nnx.Rngs(0))
  start = np.asarray(free.kernel())
  np.testing.assert_array_equal(start, np.asarray(fixed.kernel()))
  # Same bank and unit-norm scaling as the fixed arm; not LeCun noise.
  bank = np.asarray(banks.make_bank("gabor", 5, **options))[..., :8]
  np.testing.assert_allclose(
    start[:, :, 0, :] * np.sqrt(3), bank / np.linalg.norm(bank, axis=(0, 1)), atol=1e-6
  )
  assert type(free.kernel_source.kernel) is nnx.Param  # learned, unlike FrozenKernel

  x = jax.random.normal(jax.random.key(1), (2, 9, 9, 3))
  optimizer = nnx.Optimizer(free, optax.sgd(0.1), wrt=nnx.Param)
  grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(free)
  optimizer.update(free, grads)
  assert not np.array_equal(np.asarray(free.kernel()), start)


def test_array_init_is_used_as_given():
  array = np.random.default_rng(0).normal(size=(3, 3, 2, 4)).astype(np.float32)
  layer = KernelConv(2, 4, 3, source=sources.Free(init=array), rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(np.asarray(layer.kernel()), array)
  with pytest.raises(ValueError, match=r"shape \(3, 3, 2, 4\).*\(3, 3, 2, 5\)"):
    KernelConv(2, 5, 3, source=sources.Free(init=array), rngs=nnx.Rngs(0))


def test_later_layers_start_the_same_in_every_arm():
  """The init draws the same keys as plain free, so paired arms differ only in this layer."""

  def second_layer(first_source):
    rngs = nnx.Rngs(0)
    KernelConv(1, 8, 5, source=first_source, rngs=rngs)
    return np.asarray(KernelConv(8, 4, 3, rngs=rngs).kernel())

  np.testing.assert_array_equal(second_layer("free"), second_layer("free:init=gabor"))


@pytest.mark.parametrize(
  ("spec", "match"),
  [
    ("free:init=no_such_bank", "unknown kernel bank 'no_such_bank'; known banks: gabor"),
    ("free:gabor", r"'free' takes 'init=<bank>'"),
    ("free:seed=3", r"'free' takes 'init=<bank>'"),
    (
      {"source": "free", "init": "gabor", "options": {"orientations": 4}},
      r"unknown bank option\(s\) \['orientations'\]; allowed: \['bandwidth'",
    ),
    ({"source": "free", "options": {"num_scales": 1}}, "need a bank init"),
    ({"source": "free", "init": np.ones((3, 3))}, r"HWIO array .* got shape \(3, 3\)"),
    ({"source": "free", "init": np.full((3, 3, 1, 1), np.nan)}, "9 NaN or infinite"),
  ],
)
def test_bad_free_init_is_one_clear_error(spec, match):
  with pytest.raises(ValueError, match=match):
    sources.parse(spec)


def test_bad_first_layer_names_the_config_key():
  with pytest.raises(ValueError, match=r"model.first_layer='free:init=sobel'.*known banks"):
    layer_specs.resolve_sources(["conv1"], first_layer="free:init=sobel")


def test_bank_too_small_for_the_layer_says_how_many_filters_it_has():
  with pytest.raises(ValueError, match="has 1 filter"):
    KernelConv(1, 4, 3, source="free:init=sobel_x", rngs=nnx.Rngs(0))
