"""hybridconv.nn.max_pool against nnx.max_pool: same outputs, same gradients, same tie rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hybridconv.nn import max_pool

CASES = [
  ((2, 8, 8, 3), (2, 2), (2, 2), "VALID"),  # SimpleCNN
  ((2, 9, 7, 3), (2, 2), (2, 2), "VALID"),  # odd sizes drop the last row/column
  ((2, 13, 13, 4), (3, 3), (2, 2), "VALID"),  # AlexNet, overlapping windows
  ((2, 12, 12, 4), (3, 3), (2, 2), ((1, 1), (1, 1))),  # ResNet-50 stem
  ((2, 7, 10, 2), (3, 2), (1, 3), "SAME"),
  ((2, 6, 6, 2), (1, 1), (1, 1), "VALID"),
]


def _reference(x, window, strides, padding):
  return nnx.max_pool(x, window, strides=strides, padding=padding)


@pytest.mark.parametrize("shape,window,strides,padding", CASES)
@pytest.mark.slow
def test_matches_flax_outputs_and_gradients(shape, window, strides, padding):
  x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
  ours = max_pool(x, window, strides, padding)
  reference = _reference(x, window, strides, padding)
  np.testing.assert_array_equal(ours, reference)
  cotangent = jnp.asarray(np.random.default_rng(1).normal(size=ours.shape), jnp.float32)
  grad = lambda f: jax.grad(lambda x: jnp.vdot(f(x, window, strides, padding), cotangent))(x)
  np.testing.assert_array_equal(grad(max_pool), grad(_reference))


def test_ties_give_the_whole_gradient_to_the_first_position_like_flax():
  # ReLU outputs are full of exact zeros: every window here is a tie.
  x = jnp.zeros((1, 4, 4, 1)).at[0, 3, 3, 0].set(0.0)
  x = x.at[0, 0, 1, 0].set(1.0).at[0, 1, 0, 0].set(1.0)  # a tie between two non-first positions
  grad = lambda f: jax.grad(lambda x: f(x, (2, 2), (2, 2), "VALID").sum())(x)
  np.testing.assert_array_equal(grad(max_pool), grad(_reference))
  assert float(grad(max_pool)[0, 0, 1, 0]) == 1.0 and float(grad(max_pool)[0, 1, 0, 0]) == 0.0


def test_nan_propagates_to_the_window_output():
  x = jnp.arange(16.0).reshape(1, 4, 4, 1).at[0, 1, 1, 0].set(jnp.nan)
  out = max_pool(x, (2, 2))
  assert bool(jnp.isnan(out[0, 0, 0, 0]))
  assert not bool(jnp.isnan(out[0, 1, 1, 0]))


def test_jit_and_bfloat16():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 8, 8, 3)), jnp.bfloat16)
  out = jax.jit(lambda x: max_pool(x, (2, 2)))(x)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_array_equal(out, _reference(x, (2, 2), (2, 2), "VALID"))


@pytest.mark.parametrize(
  "kwargs,message",
  [
    ({"window_shape": (2,)}, "one entry per spatial axis"),
    ({"window_shape": (2, 2), "padding": "FULL"}, "padding='FULL'"),
    ({"window_shape": (2, 2), "padding": ((1, 1),)}, "one \\(low, high\\) pair"),
    ({"window_shape": (9, 9)}, "larger than the padded input"),
  ],
)
def test_bad_arguments_fail_with_one_clear_message(kwargs, message):
  with pytest.raises(ValueError, match=message):
    max_pool(jnp.zeros((1, 4, 4, 1)), **kwargs)


def test_integer_input_is_refused():
  with pytest.raises(ValueError, match="floating-point"):
    max_pool(jnp.zeros((1, 4, 4, 1), jnp.int32), (2, 2))
