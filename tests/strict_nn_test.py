"""Strict pins of the layers' documented numbers: constraint bounds, unit norms, frozen-ness.

docs/layers.md states exact ranges (frequency in [0.02, 0.45] cycles/pixel, sigma in
[0.5, kernel size] pixels, gamma in [0.2, 5]), a normalisation rule (fixed and
Gabor filters have unit L2 norm over (kh, kw, cin)) and which values each source
trains. These tests hold those statements exactly, so a moved bound, a dropped
1/sqrt(cin) or a bank that became trainable fails here.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hybridconv.kernels import constraints
from hybridconv.kernels.gabor import gabor_real
from hybridconv.nn import BankMixConv, FrozenKernel, KernelConv, is_kernel_parameter, sources

ALL_GABOR = sources.Gabor(learn=sources.GABOR_PARAMETERS)
EXTREMES = jnp.asarray([-1e30, -1e4, 1e4, 1e30], jnp.float32)


def _set_raw(layer, name, raw):
  variable = getattr(layer.kernel_source, name)
  variable[...] = jnp.broadcast_to(raw, variable[...].shape).astype(variable[...].dtype)


@pytest.mark.parametrize("kernel_size,sigma_high", [(7, 7.0), (5, 5.0), ((5, 9), 9.0)])
def test_constraint_bounds_are_the_documented_numbers_at_extreme_raw_values(
  kernel_size, sigma_high
):
  # cout = 4 so every extreme raw value gets its own filter.
  layer = KernelConv(1, 4, kernel_size, source=ALL_GABOR, rngs=nnx.Rngs(0))
  for name in ("frequency", "sigma", "gamma"):
    _set_raw(layer, name, EXTREMES[None, :])
  params = {k: np.asarray(v)[0] for k, v in layer.kernel_source.parameters().items()}
  expected = {"frequency": (0.02, 0.45), "sigma": (0.5, sigma_high), "gamma": (0.2, 5.0)}
  for name, (low, high) in expected.items():
    np.testing.assert_allclose(params[name], [low, low, high, high], rtol=1e-6, err_msg=name)


def test_constraint_maps_are_log_uniform_between_the_bounds():
  """raw = 0 is the geometric mean of the bounds: the map is log-space, not linear."""
  layer = KernelConv(1, 1, 7, source=ALL_GABOR, rngs=nnx.Rngs(0))
  for name in ("frequency", "sigma", "gamma"):
    _set_raw(layer, name, jnp.zeros((1, 1)))
  params = {k: float(np.asarray(v).ravel()[0]) for k, v in layer.kernel_source.parameters().items()}
  assert params["frequency"] == pytest.approx(math.sqrt(0.02 * 0.45), rel=1e-5)
  assert params["sigma"] == pytest.approx(math.sqrt(0.5 * 7), rel=1e-5)
  assert params["gamma"] == pytest.approx(1.0, rel=1e-5)


def _norms(kernel):
  return np.sqrt(np.sum(np.asarray(kernel, np.float64) ** 2, axis=(0, 1, 2)))


@pytest.mark.parametrize("cin", [1, 3, 5])
@pytest.mark.parametrize(
  "source",
  [
    sources.Gabor(),
    sources.Gabor(learn=sources.GABOR_PARAMETERS, init="random"),
    sources.Gabor(channels="mix"),
    sources.Gabor(gain=True),
    sources.Gabor(zero_mean=False),
    sources.Fixed("gabor", options={"num_orientations": 4, "num_scales": 1}),
    sources.Fixed("dct"),
    sources.Fixed("sobel_x"),
  ],
  ids=[
    "gabor",
    "gabor_random",
    "gabor_mix",
    "gabor_gain",
    "gabor_dc",
    "fixed_gabor",
    "fixed_dct",
    "fixed_sobel",
  ],
)
@pytest.mark.slow
def test_gabor_and_fixed_filters_have_unit_norm_over_kh_kw_cin(source, cin):
  cout = 1 if isinstance(source, sources.Fixed) and source.bank == "sobel_x" else 6
  layer = KernelConv(cin, cout, 5, source=source, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(_norms(layer.kernel()), np.ones(cout), rtol=1e-5)


@pytest.mark.parametrize("cin", [1, 3])
def test_pair_gabor_is_the_closed_form_over_sqrt_cin(cin):
  """Every (input, output) slice of a 'pair' Gabor is the unit-norm Gabor / sqrt(cin)."""
  layer = KernelConv(cin, 4, 7, source=ALL_GABOR, rngs=nnx.Rngs(0))
  p = {k: np.asarray(v, np.float64) for k, v in layer.kernel_source.parameters().items()}
  kernel = np.asarray(layer.kernel(), np.float64)
  for i in range(cin):
    for o in range(4):
      g = np.asarray(
        gabor_real(7, *(float(p[k][i, o]) for k in sources.GABOR_PARAMETERS), zero_mean=True),
        np.float64,
      )
      g /= np.linalg.norm(g)
      np.testing.assert_allclose(kernel[:, :, i, o], g / math.sqrt(cin), atol=2e-6)


def test_fixed_without_normalisation_keeps_textbook_values_averaged_over_inputs():
  layer = KernelConv(2, 1, 3, source=sources.Fixed("sobel_x", normalize=False), rngs=nnx.Rngs(0))
  sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64)
  kernel = np.asarray(layer.kernel())
  for c in range(2):
    np.testing.assert_allclose(kernel[:, :, c, 0], sobel / 2, atol=1e-6)


def test_random_source_is_he_normal_over_kh_kw_cin():
  kernel = np.asarray(KernelConv(8, 256, 5, source="random", rngs=nnx.Rngs(0)).kernel())
  expected = math.sqrt(2 / (5 * 5 * 8))
  assert kernel.std() == pytest.approx(expected, rel=0.02)
  assert abs(kernel.mean()) < 0.05 * expected  # zero-mean (std of the mean ~0.004 * expected)


# ---------------------------------------------------------------------------
# Frozen-ness by variable type, per source


def _typed_leaves(module):
  flat = nnx.to_flat_state(nnx.state(module))
  return {"/".join(map(str, path)): var for path, var in flat}


def _assert_frozen_only(module, where):
  leaves = _typed_leaves(module)
  assert leaves, f"{where} holds no values"
  for path, var in leaves.items():
    assert isinstance(var, FrozenKernel), f"{where}: {path} is {type(var).__name__}"
  assert not nnx.state(module, nnx.Param), f"{where} holds an nnx.Param"


@pytest.mark.parametrize(
  "source",
  [
    "fixed",
    "fixed:sobel_x",
    "fixed:dct",
    "random",
    "random:7",
    sources.Fixed("user", options={"array": np.ones((3, 3))}),
  ],
  ids=str,
)
def test_fixed_and_random_kernels_are_frozen_kernels_and_never_params(source):
  cout = 1 if "sobel" in str(source) or "user" in str(source) else 4
  layer = KernelConv(2, cout, 3, source=source, use_bias=False, rngs=nnx.Rngs(0))
  _assert_frozen_only(layer.kernel_source, str(source))
  assert not nnx.state(layer, nnx.Param)  # without a bias nothing of the layer is trained


def test_hybrid_fixed_and_random_groups_are_frozen_and_free_and_gabor_groups_learn():
  source = sources.Hybrid(
    (
      (sources.Gabor(), 2),
      (sources.Fixed("sobel_x"), 1),
      (sources.Random(seed=2), 2),
      (sources.Free(), 3),
    )
  )
  layer = KernelConv(3, 8, 3, source=source, use_bias=False, rngs=nnx.Rngs(0))
  gabor, fixed, random, free = layer.kernel_source.groups
  _assert_frozen_only(fixed, "hybrid fixed group")
  _assert_frozen_only(random, "hybrid random group")
  free_leaves = _typed_leaves(free)
  assert set(free_leaves) == {"kernel"} and type(free_leaves["kernel"]) is nnx.Param
  learned = {p for p, v in _typed_leaves(gabor).items() if is_kernel_parameter(v)}
  frozen = {p for p, v in _typed_leaves(gabor).items() if isinstance(v, FrozenKernel)}
  assert learned == {"theta", "frequency"} and frozen == {"sigma", "gamma", "psi"}


def test_bankmix_fixed_bank_is_frozen_and_the_mix_learns():
  layer = BankMixConv(
    3, 8, 3, source=sources.BankMix(bank=sources.Fixed("dct"), norm="none"), rngs=nnx.Rngs(0)
  )
  _assert_frozen_only(layer.bank, "bankmix bank")
  mix = _typed_leaves(layer.mix)
  assert set(mix) == {"kernel", "bias"} and all(type(v) is nnx.Param for v in mix.values())


def test_bankmix_gabor_bank_learns_only_its_chosen_parameters():
  bank = sources.Gabor(learn=("theta",))
  layer = BankMixConv(
    3, 8, 5, source=sources.BankMix(bank=bank, num_filters=4, norm="none"), rngs=nnx.Rngs(0)
  )
  leaves = _typed_leaves(layer.bank)
  assert {p for p, v in leaves.items() if is_kernel_parameter(v)} == {"theta"}
  assert {p for p, v in leaves.items() if isinstance(v, FrozenKernel)} == {
    "frequency",
    "sigma",
    "gamma",
    "psi",
  }


def test_optimiser_over_params_sees_no_frozen_value():
  """What ``nnx.Optimizer(..., wrt=nnx.Param)`` would train: the free group and the bias only."""
  source = sources.Hybrid(
    ((sources.Fixed("sobel_x"), 1), (sources.Random(), 1), (sources.Free(), 2))
  )
  layer = KernelConv(2, 4, 3, source=source, rngs=nnx.Rngs(0))
  trained = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(layer, nnx.Param))}
  assert trained == {"kernel_source/groups/2/kernel", "bias"}


def test_frequency_bound_at_nyquist_is_refused_naming_the_value_and_the_limit():
  with pytest.raises(ValueError) as error:
    constraints.frequency_bounds(0.02, 0.5)
  message = str(error.value)
  assert "upper bound 0.5" in message and "Nyquist limit 0.5" in message
  assert "choose a value below 0.5" in message
  assert constraints.frequency_bounds() == constraints.Bounds(0.02, 0.45)
