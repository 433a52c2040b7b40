"""Strict pins of the models and of the logged Gabor-likeness score.

* BatchNorm momentum and epsilon define the published models (ResNets and
  AlexNet-small: 0.9 and 1e-5, PyTorch's values; SimpleCNN: Flax's defaults).
* SimpleCNN's forward pass is recomputed from its weights with plain numpy
  (a known answer, not only shape and finiteness).
* The per-filter R^2 that the tracker logs is recomputed as ``1 - SSE / SST``
  with a *centred* SST on kernels that carry a DC offset, where an uncentred
  SST would inflate the score.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hybridconv import tracking
from hybridconv.analysis import gabor_fit
from hybridconv.kernels.gabor import gabor_real
from hybridconv.models import MODELS, CifarResNet, SimpleCNN
from hybridconv.nn import KernelConv

# ---------------------------------------------------------------------------
# BatchNorm hyperparameters


def _batch_norms(name, num_classes, image_shape):
  model = nnx.eval_shape(lambda: MODELS[name](num_classes, image_shape, rngs=nnx.Rngs(0)))
  return [node for _, node in nnx.iter_graph(model) if isinstance(node, nnx.BatchNorm)]


@pytest.mark.parametrize(
  "name,num_classes,image_shape,count",
  [
    ("resnet20", 10, (32, 32, 3), 19 + 2),
    ("resnet56", 10, (32, 32, 3), 55 + 2),
    ("resnet18", 1000, (224, 224, 3), 17 + 3),
    ("resnet50", 1000, (224, 224, 3), 49 + 4),
    ("alexnet_small", 10, (32, 32, 3), 5),
  ],
)
@pytest.mark.slow
def test_published_models_use_pytorch_batch_norm_momentum_and_epsilon(
  name, num_classes, image_shape, count
):
  norms = _batch_norms(name, num_classes, image_shape)
  assert len(norms) == count  # one per conv, shortcuts included
  for norm in norms:
    assert norm.momentum == 0.9 and norm.epsilon == 1e-5
    assert norm.use_scale and norm.use_bias


def test_alexnet_2012_has_no_batch_norm_and_simple_cnn_uses_flax_defaults():
  assert _batch_norms("alexnet", 1000, (224, 224, 3)) == []
  norms = _batch_norms("simple_cnn", 10, (28, 28, 1))
  assert len(norms) == 2
  assert all(n.momentum == 0.99 and n.epsilon == 1e-5 for n in norms)


# ---------------------------------------------------------------------------
# Known-answer forwards


def _conv_same(x, kernel):
  """Cross-correlation with SAME zero padding, in numpy float64 (NHWC, HWIO)."""
  kh, kw = kernel.shape[:2]
  top, left = (kh - 1) // 2, (kw - 1) // 2
  padded = np.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
  out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
  for i in range(kh):
    for j in range(kw):
      out += padded[:, i : i + x.shape[1], j : j + x.shape[2], :] @ kernel[i, j]
  return out


def _bn_eval(x, norm):
  v = lambda a: np.asarray(a[...], np.float64)
  return (x - v(norm.mean)) / np.sqrt(v(norm.var) + norm.epsilon) * v(norm.scale) + v(norm.bias)


def _pool(x):
  n, h, w, c = x.shape
  return x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


@pytest.mark.parametrize("first_layer", ["free", "hybrid"])
def test_simple_cnn_eval_forward_equals_a_numpy_forward_from_its_weights(first_layer):
  model = SimpleCNN(5, (12, 12, 1), first_layer=first_layer, width=0.25, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  for norm in (model.bn1, model.bn2):  # non-trivial running statistics and affine terms
    c = norm.mean[...].shape
    norm.mean[...] = jnp.asarray(rng.normal(size=c), jnp.float32)
    norm.var[...] = jnp.asarray(rng.uniform(0.5, 2, size=c), jnp.float32)
    norm.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, size=c), jnp.float32)
    norm.bias[...] = jnp.asarray(rng.normal(size=c) * 0.1, jnp.float32)
  model.eval()
  x = rng.normal(size=(3, 12, 12, 1))
  v = lambda a: np.asarray(a, np.float64)
  h = _conv_same(x, v(model.conv1.kernel())) + v(model.conv1.bias[...])
  h = _pool(np.maximum(_bn_eval(h, model.bn1), 0))
  h = _conv_same(h, v(model.conv2.kernel())) + v(model.conv2.bias[...])
  h = _pool(np.maximum(_bn_eval(h, model.bn2), 0)).reshape(3, -1)
  h = np.maximum(h @ v(model.fc1.kernel[...]) + v(model.fc1.bias[...]), 0)
  expected = h @ v(model.fc2.kernel[...]) + v(model.fc2.bias[...])
  logits = np.asarray(model(jnp.asarray(x, jnp.float32)), np.float64)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_resnet_eval_outputs_are_per_example_and_train_mode_uses_the_batch():
  model = CifarResNet(10, (8, 8, 3), depth=8, width=0.5, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
  model.eval()
  whole = np.asarray(model(x))
  single = np.concatenate([np.asarray(model(x[i : i + 1])) for i in range(4)])
  np.testing.assert_allclose(whole, single, rtol=1e-5, atol=1e-5)
  # Untrained running statistics are (0, 1): eval BN is the identity map up to eps.
  model.train()
  train_whole = np.asarray(model(x))
  assert not np.allclose(train_whole, whole, atol=1e-3)


# ---------------------------------------------------------------------------
# Logged Gabor-likeness R^2


def _render(fit, i, size):
  """The documented Gabor model, written out in numpy (float64)."""
  offset = np.arange(size) - (size - 1) / 2
  x, y = np.meshgrid(offset, -offset)  # x right, y up
  g = {k: float(np.asarray(v)[i]) for k, v in fit._asdict().items()}
  x, y = x - g["centre_x"], y - g["centre_y"]
  xr = x * math.cos(g["theta"]) + y * math.sin(g["theta"])
  yr = -x * math.sin(g["theta"]) + y * math.cos(g["theta"])
  envelope = np.exp(-(xr**2 + (g["gamma"] * yr) ** 2) / (2 * g["sigma"] ** 2))
  return (
    g["amplitude"] * envelope * np.cos(2 * math.pi * g["frequency"] * xr + g["psi"]) + g["offset"]
  )


def _r2(kernel, reconstruction, axes):
  sse = np.sum((kernel - reconstruction) ** 2, axis=axes)
  sst = np.sum((kernel - kernel.mean(axis=(0, 1), keepdims=True)) ** 2, axis=axes)
  return 1 - sse / sst


@pytest.mark.slow
def test_logged_gabor_likeness_is_one_minus_sse_over_centred_sst():
  size, cin, cout = 7, 2, 4
  rng = np.random.default_rng(0)
  kernel = np.zeros((size, size, cin, cout))
  colour = np.array([[1.0, 0.6, -0.3, 0.8], [0.5, -1.0, 1.0, 0.2]])
  for o in range(cout):
    g = np.asarray(gabor_real(size, 0.4 * o, 0.12 + 0.04 * o, 1.6, 1.0, 0.3 * o), np.float64)
    g += 0.6 + 0.2 * o  # a DC offset the fit (no offset term) cannot explain
    g += rng.normal(scale=0.15, size=g.shape)
    kernel[:, :, :, o] = g[:, :, None] * colour[:, o]
  layer = KernelConv(cin, cout, size, rngs=nnx.Rngs(0))
  layer.kernel_source.kernel[...] = jnp.asarray(kernel, jnp.float32)
  model = nnx.Dict({"conv1": layer})
  logger = tracking.MemoryLogger()
  scalars = tracking.FilterTracker(logger, gabor_fit=True)(model, 3)
  table = next(
    e.data for e in logger.events if e.kind == "table" and e.data["name"] == "gabor_fit/conv1"
  )
  logged = {c: np.array([row[j] for row in table["rows"]]) for j, c in enumerate(table["columns"])}

  result = gabor_fit.fit_conv_kernel(kernel.astype(np.float32), "dominant")
  spatial, col, _ = (
    np.asarray(a, np.float64) for a in gabor_fit.dominant_component(kernel.astype(np.float32))
  )
  rendered = np.stack([_render(result.fit, o, size) for o in range(cout)], axis=-1)
  expected = _r2(kernel, rendered[:, :, None, :] * col[None, None], (0, 1, 2))
  expected_spatial = _r2(spatial, rendered, (0, 1))
  np.testing.assert_allclose(logged["r2"], expected, atol=2e-4)
  np.testing.assert_allclose(logged["spatial_r2"], expected_spatial, atol=2e-4)
  assert np.all(expected < 0.9)  # the offset costs R^2; an uncentred SST would hide it
  uncentred = 1 - np.sum(
    (kernel - rendered[:, :, None, :] * col[None, None]) ** 2, axis=(0, 1, 2)
  ) / np.sum(kernel**2, axis=(0, 1, 2))
  assert np.all(uncentred - expected > 0.05)
  assert scalars["gabor_fit/conv1/r2_mean"] == pytest.approx(expected.mean(), abs=2e-4)
  assert scalars["gabor_fit/conv1/r2_median"] == pytest.approx(np.median(expected), abs=2e-4)
  assert scalars["gabor_fit/conv1/spatial_r2_mean"] == pytest.approx(
    expected_spatial.mean(), abs=2e-4
  )
