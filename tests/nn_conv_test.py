"""Tests of the conv layers: learnability, frozenness, equivalences, dtypes, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from hybridconv.nn import (
  BankMixConv,
  FrozenKernel,
  KernelConv,
  conv_layer,
  is_kernel_parameter,
  sources,
)

ALL_GABOR = sources.Gabor(learn=sources.GABOR_PARAMETERS, gain=True)
SOURCES = {
  "free": sources.Free(),
  "gabor": sources.Gabor(),
  "gabor_all": ALL_GABOR,
  "gabor_mix": sources.Gabor(learn=sources.GABOR_PARAMETERS, channels="mix", init="random"),
  "fixed": sources.Fixed("gabor", options={"num_orientations": 4, "num_scales": 1}),
  "random": sources.Random(seed=3),
  "hybrid": sources.Hybrid(
    ((ALL_GABOR, 3), (sources.Fixed("sobel_x"), 1), (sources.Random(), 2), (sources.Free(), 2))
  ),
  "bankmix": sources.BankMix(
    bank=sources.Fixed("gabor", options={"num_orientations": 4, "num_scales": 1})
  ),
  "bankmix_gabor": sources.BankMix(bank=ALL_GABOR, num_filters=4, activation="relu"),
}


def _images(seed=0, shape=(4, 12, 12, 3)):
  return jax.random.normal(jax.random.key(seed), shape)


def _train_steps(model, steps=3):
  """A few Adam steps on a regression loss; returns the model's state before and after."""
  x = _images(1)
  target = jax.random.normal(jax.random.key(2), model(x).shape)
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    loss_fn = lambda m: jnp.mean((m(x) - target) ** 2)
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return grads

  before = jax.tree.map(np.array, nnx.state(model))
  grads = [step(model, optimizer) for _ in range(steps)]
  return before, nnx.state(model), grads[0]


def _leaves_by_type(state, variable_type):
  flat = nnx.to_flat_state(state)
  return {path: var for path, var in flat if isinstance(var, variable_type)}


@pytest.mark.parametrize("name", list(SOURCES))
@pytest.mark.slow
def test_learnable_parameters_get_gradients_and_change_frozen_stay_identical(name):
  layer = conv_layer(3, 8, 3, source=SOURCES[name], rngs=nnx.Rngs(0))
  before, after, grads = _train_steps(layer)
  before_flat = dict(nnx.to_flat_state(before))
  params = _leaves_by_type(after, nnx.Param)
  assert params, "every layer has learnable values"
  grad_flat = dict(nnx.to_flat_state(grads))
  for path, var in params.items():
    grad = np.asarray(grad_flat[path][...])
    assert np.all(np.isfinite(grad)), path
    assert np.any(grad != 0), f"parameter {path} received a zero gradient"
    assert not np.array_equal(np.asarray(var[...]), np.asarray(before_flat[path][...])), (
      f"parameter {path} did not change"
    )
  for path, var in _leaves_by_type(after, FrozenKernel).items():
    np.testing.assert_array_equal(
      np.asarray(var[...]), np.asarray(before_flat[path][...]), err_msg=f"frozen {path} changed"
    )
  frozen_paths = set(_leaves_by_type(after, FrozenKernel))
  assert not frozen_paths & set(grad_flat), "frozen values must not be differentiated"


def test_every_gabor_parameter_is_learnable_and_typed():
  layer = KernelConv(3, 8, 5, source=ALL_GABOR, rngs=nnx.Rngs(0))
  names = {path[-1] for path, v in nnx.to_flat_state(nnx.state(layer)) if is_kernel_parameter(v)}
  assert names == set(sources.GABOR_PARAMETERS)
  default = KernelConv(3, 8, 5, source="gabor", rngs=nnx.Rngs(0))
  learned = {
    path[-1] for path, v in nnx.to_flat_state(nnx.state(default)) if is_kernel_parameter(v)
  }
  frozen = {path[-1] for path in _leaves_by_type(nnx.state(default), FrozenKernel)}
  assert learned == {"theta", "frequency"} and frozen == {"sigma", "gamma", "psi"}


@pytest.mark.parametrize("raw", [-1e30, -1e4, 1e4, 1e30])
def test_extreme_raw_parameters_give_finite_kernels_and_gradients(raw):
  layer = KernelConv(3, 4, 7, source=ALL_GABOR, rngs=nnx.Rngs(0))
  for name in sources.GABOR_PARAMETERS:
    getattr(layer.kernel_source, name)[...] = jnp.full_like(
      getattr(layer.kernel_source, name)[...], raw
    )
  x = _images(0, (2, 9, 9, 3))
  kernel = layer.kernel()
  assert np.all(np.isfinite(kernel))
  grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(layer)
  for _, value in nnx.to_flat_state(grads):
    assert np.all(np.isfinite(value[...]))


def test_constrained_parameters_stay_in_range():
  layer = KernelConv(1, 4, 5, source=ALL_GABOR, rngs=nnx.Rngs(0))
  for name in ("frequency", "sigma", "gamma"):
    getattr(layer.kernel_source, name)[...] = jnp.asarray([[-1e6, -3.0, 3.0, 1e6]])
  params = layer.kernel_source.parameters()
  assert np.all(params["frequency"] < 0.5) and np.all(params["frequency"] > 0)
  assert np.all(params["sigma"] >= 0.5) and np.all(params["gamma"] > 0)


@pytest.mark.parametrize(
  "padding,strides,dilation",
  [
    ("SAME", 1, 1),
    ("VALID", 2, 1),
    ("CIRCULAR", 1, 2),
    ("REFLECT", 2, 1),
    (((1, 2), (0, 1)), 1, 1),
  ],
)
def test_free_matches_nnx_conv(padding, strides, dilation):
  ours = KernelConv(
    3, 6, (3, 5), strides=strides, padding=padding, kernel_dilation=dilation, rngs=nnx.Rngs(7)
  )
  ref = nnx.Conv(
    3, 6, (3, 5), strides=strides, padding=padding, kernel_dilation=dilation, rngs=nnx.Rngs(7)
  )
  np.testing.assert_array_equal(ours.kernel(), ref.kernel[...])
  x = _images(3, (2, 11, 13, 3))
  np.testing.assert_allclose(ours(x), ref(x), rtol=1e-6, atol=1e-6)
  g_ours = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(ours)
  g_ref = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(ref)
  np.testing.assert_allclose(
    g_ours.kernel_source.kernel[...], g_ref.kernel[...], rtol=1e-5, atol=1e-5
  )


def test_hybrid_equals_its_groups_concatenated():
  groups = (
    (sources.Gabor(), 3),
    (sources.Fixed("sobel_x"), 1),
    (sources.Random(seed=1), 2),
    (sources.Free(), 2),
  )
  hybrid = KernelConv(3, 8, 3, source=sources.Hybrid(groups), use_bias=False, rngs=nnx.Rngs(0))
  x = _images(4)
  outputs = []
  for group, (source, count) in zip(hybrid.kernel_source.groups, groups, strict=True):
    single = KernelConv(3, count, 3, source=source, use_bias=False, rngs=nnx.Rngs(9))
    single.kernel_source = group  # the very same kernel values
    outputs.append(single(x))
  np.testing.assert_allclose(hybrid(x), jnp.concatenate(outputs, axis=-1), rtol=1e-6, atol=1e-6)


def test_hybrid_fractions_round_to_counts():
  layer = KernelConv(
    3,
    10,
    3,
    source=sources.Hybrid(((sources.Gabor(), 1 / 3), (sources.Free(), 2 / 3))),
    rngs=nnx.Rngs(0),
  )
  assert layer.kernel_source.counts == (3, 7)
  assert layer.kernel().shape == (3, 3, 3, 10)


@pytest.mark.parametrize("name", list(SOURCES))
@pytest.mark.slow
def test_jit_grad_and_bfloat16(name):
  layer = conv_layer(3, 8, 3, source=SOURCES[name], dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  x = _images(5)

  @nnx.jit
  def loss_and_grad(model):
    return nnx.value_and_grad(lambda m: jnp.mean(m(x).astype(jnp.float32) ** 2))(model)

  loss, grads = loss_and_grad(layer)
  assert layer(x).dtype == jnp.bfloat16
  assert np.isfinite(loss)
  assert all(np.all(np.isfinite(v[...])) for _, v in nnx.to_flat_state(grads))
  f32 = conv_layer(3, 8, 3, source=SOURCES[name], rngs=nnx.Rngs(0))
  rel = jnp.linalg.norm(layer(x).astype(jnp.float32) - f32(x)) / jnp.linalg.norm(f32(x))
  assert rel < 2e-2


def test_kernel_shapes_and_strides():
  layer = KernelConv(3, 64, 11, strides=4, padding="VALID", source="hybrid", rngs=nnx.Rngs(0))
  assert layer.kernel().shape == (11, 11, 3, 64)
  assert layer(jnp.zeros((1, 227, 227, 3))).shape == (1, 55, 55, 64)
  bank = BankMixConv(3, 16, 5, source=SOURCES["bankmix"], strides=2, rngs=nnx.Rngs(0))
  assert bank(jnp.zeros((2, 16, 16, 3))).shape == (2, 8, 8, 16)
  assert bank.kernel().shape == (5, 5, 1, 8)  # 4 orientations x 1 scale x 2 phases


def test_bankmix_bank_is_depthwise():
  """Each input channel sees the whole bank: zeroing one input zeroes its responses only."""
  layer = BankMixConv(
    2,
    3,
    3,
    source=sources.BankMix(bank=sources.Fixed("sobel_x"), norm="none"),
    use_bias=False,
    rngs=nnx.Rngs(0),
  )
  x = _images(6, (1, 8, 8, 2))
  sobel = layer.kernel()
  expected = jnp.concatenate(
    [
      jax.lax.conv_general_dilated(
        x[..., c : c + 1], sobel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
      )
      for c in range(2)
    ],
    axis=-1,
  )
  np.testing.assert_allclose(layer(x), layer.mix(expected), rtol=1e-5, atol=1e-5)


def test_frozen_kernels_are_saved_with_the_model():
  layer = KernelConv(3, 4, 3, source="random", rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(layer)
  frozen = _leaves_by_type(state, FrozenKernel)
  assert frozen
  restored = nnx.merge(graphdef, state)
  np.testing.assert_array_equal(restored.kernel(), layer.kernel())


@pytest.mark.parametrize(
  "kwargs,match",
  [
    ({"kernel_size": 0}, "kernel_size"),
    ({"kernel_size": (3, -1)}, "kernel_size"),
    ({"source": sources.Hybrid(((sources.Gabor(), 3), (sources.Free(), 4)))}, "add up to 7"),
    ({"source": "fixed:no_such_bank"}, "no_such_bank"),
    ({"source": "sideways"}, "unknown kernel source"),
    ({"source": {"source": "gabor", "frequency_range": (0.1, 0.6)}}, "Nyquist"),
    ({"source": {"source": "gabor", "learn": ["theta", "colour"]}}, "colour"),
    ({"source": sources.Fixed("user", options={"array": np.ones((5, 5))})}, "shape"),
    ({"out_features": 0}, "out_features"),
    ({"padding": "FULL"}, "padding"),
  ],
)
def test_bad_arguments_raise_clear_value_errors(kwargs, match):
  arguments = {"in_features": 3, "out_features": 8, "kernel_size": 3, "rngs": nnx.Rngs(0)} | kwargs
  with pytest.raises(ValueError, match=match):
    conv_layer(**arguments)


def test_fixed_bank_smaller_than_group_is_refused():
  with pytest.raises(ValueError, match="sobel_x.*1 filter"):
    KernelConv(3, 4, 3, source="fixed:sobel_x", rngs=nnx.Rngs(0))


def test_parse_strings_and_dicts():
  assert sources.parse("fixed:dct") == sources.Fixed("dct")
  assert sources.parse("random:5") == sources.Random(5)
  hybrid = sources.parse(
    {"source": "hybrid", "groups": [["gabor", 2], ["fixed:sobel_x", 1], ["free", 5]]}
  )
  assert hybrid.counts(8) == [2, 1, 5]
  with pytest.raises(ValueError, match="unknown field"):
    sources.parse({"source": "random", "sed": 1})


@pytest.mark.parametrize("bank", ["random", {"source": "fixed", "bank": "master_key"}])
def test_a_linear_bank_and_mix_equals_a_conv_with_its_effective_kernel(bank):
  from hybridconv.nn import BankMixConv, convolve  # noqa: PLC0415

  layer = BankMixConv(
    2,
    5,
    7,
    source={"source": "bankmix", "bank": bank, "num_filters": 4, "norm": "none"},
    rngs=nnx.Rngs(0),
  )
  x = jax.random.normal(jax.random.key(1), (2, 12, 12, 2))
  kernel = layer.effective_kernel()
  expected = convolve(x, kernel, strides=(1, 1), padding="SAME", kernel_dilation=(1, 1))
  expected = expected + layer.mix.bias[...]
  np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(expected), rtol=1e-4, atol=1e-5)
  assert layer.effective_kernel().shape == (7, 7, 2, 5)
  normed = BankMixConv(2, 5, 7, source={"source": "bankmix", "bank": bank}, rngs=nnx.Rngs(0))
  assert normed.effective_kernel() is None  # BatchNorm between bank and mix: not one conv
