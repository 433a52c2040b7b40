"""Tests of the model zoo: parameter-count pins, shapes, per-layer kernel specs, train/eval modes.

Parameter counts are the sizes of all ``nnx.Param`` leaves (parametric-kernel ``Param``s
included): weights, biases and BatchNorm scale/bias; not BatchNorm running
statistics, frozen kernels or RNG state -- the same thing PyTorch's
``sum(p.numel() for p in model.parameters())`` counts. Large models are only
ever built abstractly (``nnx.eval_shape``) to keep the file fast on CPU.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from hybridconv.models import (
  MODELS,
  AlexNet,
  AlexNetSmall,
  CifarResNet,
  ResNet,
  build_model,
  conv_layers,
  local_response_norm,
  resolve_sources,
)
from hybridconv.nn import FreeKernel, GaborKernel, HybridKernel, is_kernel_parameter, sources

# nnx filter selecting the learned parameters of parametric kernels.
KernelParam = lambda path, variable: is_kernel_parameter(variable)  # noqa: E731

# (model, num_classes, image_shape, parameters). ResNet-18/34/50/101/152 at 1000
# classes are torchvision's published counts; the others are this code's, pinned.
PARAMETER_COUNTS = [
  ("simple_cnn", 10, (28, 28, 1), 455_114),
  ("alexnet", 1000, (224, 224, 3), 62_378_344),
  ("alexnet_small", 10, (32, 32, 3), 7_707_594),
  ("alexnet_small", 10, (28, 28, 1), 5_869_386),
  ("resnet20", 10, (32, 32, 3), 272_474),
  ("resnet56", 10, (32, 32, 3), 855_770),
  ("resnet18", 1000, (224, 224, 3), 11_689_512),
  ("resnet34", 1000, (224, 224, 3), 21_797_672),
  ("resnet50", 1000, (224, 224, 3), 25_557_032),
  ("resnet101", 1000, (224, 224, 3), 44_549_160),
  ("resnet152", 1000, (224, 224, 3), 60_192_808),
]
# One small input per model for the abstract specs tests.
SMALL_INPUTS = {
  "simple_cnn": (28, 28, 1),
  "alexnet": (224, 224, 3),
  "alexnet_small": (32, 32, 3),
  "resnet20": (32, 32, 3),
  "resnet56": (32, 32, 3),
  "resnet18": (64, 64, 3),
  "resnet34": (64, 64, 3),
  "resnet50": (64, 64, 3),
  "resnet101": (64, 64, 3),
  "resnet152": (64, 64, 3),
}


def _abstract(name, num_classes=10, image_shape=None, **kwargs):
  """A model built with abstract arrays: structure and shapes only, no compute."""
  shape = image_shape or SMALL_INPUTS[name]
  return nnx.eval_shape(lambda: MODELS[name](num_classes, shape, rngs=nnx.Rngs(0), **kwargs))


def _count(model, variable_type=nnx.Param):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, variable_type)))


def _images(shape, seed=0):
  return jax.random.normal(jax.random.key(seed), shape)


def test_registry_is_complete():
  assert sorted(MODELS) == sorted(SMALL_INPUTS)


@pytest.mark.parametrize("name,num_classes,image_shape,expected", PARAMETER_COUNTS)
@pytest.mark.slow
def test_parameter_count_pins(name, num_classes, image_shape, expected):
  assert _count(_abstract(name, num_classes, image_shape)) == expected


@pytest.mark.parametrize("depth,expected", [(20, 269_722), (56, 853_018)])
def test_option_a_shortcuts_give_the_papers_counts(depth, expected):
  """He et al. 2015 table 6: ResNet-20 0.27M, ResNet-56 0.85M parameters (option A)."""
  model = nnx.eval_shape(
    lambda: CifarResNet(10, (32, 32, 3), depth=depth, shortcut="pad", rngs=nnx.Rngs(0))
  )
  assert _count(model) == expected
  assert not any(name.endswith("shortcut") for name in model.conv_layer_names)


def test_batch_statistics_are_not_counted_as_parameters():
  model = _abstract("resnet20")
  # Two running statistics per BatchNorm channel, as many as scale + bias.
  bn_params = sum(
    math.prod(v.shape)
    for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
    if "bn" in str(path[-2])
  )
  assert _count(model, nnx.BatchStat) == bn_params > 0


# One of each layout (the ResNets share their code paths by depth).
REPRESENTATIVES = ["simple_cnn", "alexnet", "alexnet_small", "resnet20", "resnet18", "resnet50"]


@pytest.mark.parametrize("name", REPRESENTATIVES)
@pytest.mark.slow
def test_gabor_first_layer_changes_the_count_by_the_kernel_parameters(name):
  """A 'pair' Gabor learning (theta, frequency) has 2*cin*cout kernel params, not kh*kw*cin*cout."""
  free = _abstract(name)
  gabor = _abstract(name, first_layer="gabor")
  conv1 = conv_layers(free)["conv1"]
  kh, kw = conv1.kernel_size
  cin, cout = conv1.in_features, conv1.out_features
  assert _count(gabor) == _count(free) - kh * kw * cin * cout + 2 * cin * cout
  assert _count(gabor, KernelParam) == 2 * cin * cout


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_first_layer_gabor_is_in_conv1_only(name):
  model = _abstract(name, first_layer="gabor")
  layers = conv_layers(model)  # also checks that names and attribute paths agree
  assert tuple(layers) == tuple(model.conv_layer_names)
  assert isinstance(layers["conv1"].kernel_source, GaborKernel)
  assert all(
    isinstance(layer.kernel_source, FreeKernel)
    for layer_name, layer in layers.items()
    if layer_name != "conv1"
  )


@pytest.mark.parametrize("name", ["alexnet", "alexnet_small", "resnet20", "resnet50"])
@pytest.mark.slow
def test_star_makes_every_conv_hybrid_including_shortcuts(name):
  model = _abstract(name, kernels={"*": "hybrid"})
  layers = conv_layers(model)
  assert len(layers) == len(model.conv_layer_names)
  assert all(isinstance(layer.kernel_source, HybridKernel) for layer in layers.values())
  if name.startswith("resnet"):
    assert sum(n.endswith("_shortcut") for n in layers) == (2 if name == "resnet20" else 4)


def test_conv_layer_names_of_resnets_are_in_forward_order():
  names = _abstract("resnet20").conv_layer_names
  assert names[:4] == ("conv1", "stage1_block1_conv1", "stage1_block1_conv2", "stage1_block2_conv1")
  assert names[6:10] == (
    "stage1_block3_conv2",
    "stage2_block1_conv1",
    "stage2_block1_conv2",
    "stage2_block1_shortcut",
  )
  bottleneck = _abstract("resnet50").conv_layer_names
  assert bottleneck[1:5] == (
    "stage1_block1_conv1",
    "stage1_block1_conv2",
    "stage1_block1_conv3",
    "stage1_block1_shortcut",
  )
  # A layer's spec name is its attribute path joined by '_'.
  model = _abstract("resnet20")
  assert conv_layers(model)["stage3_block1_shortcut"] is model.stage3_block1.shortcut


def test_patterns_select_groups_of_layers_and_the_longest_wins():
  model = _abstract(
    "resnet20",
    first_layer="gabor",
    kernels={"*": "hybrid", "*_shortcut": "free", "stage2_*": "random"},
  )
  kinds = {name: type(layer.kernel_source).__name__ for name, layer in conv_layers(model).items()}
  assert kinds["conv1"] == "HybridKernel"  # a kernels entry beats first_layer
  assert kinds["stage1_block1_conv1"] == "HybridKernel"
  assert kinds["stage2_block2_conv2"] == "FrozenArrayKernel"  # random
  assert kinds["stage2_block1_shortcut"] == "FreeKernel"  # '*_shortcut' is longer than 'stage2_*'
  assert kinds["stage3_block1_shortcut"] == "FreeKernel"
  resolved = resolve_sources(("conv1", "conv2"), first_layer="random", kernels={"conv2": "gabor"})
  assert resolved == {"conv1": sources.Random(), "conv2": sources.Gabor()}


@pytest.mark.parametrize(
  "kernels,match",
  [
    ({"conv9": "gabor"}, r"unknown conv layer\(s\) \['conv9'\].*'conv1', 'conv2'"),
    ({"stage9_*": "gabor"}, r"stage9_\*"),
    ({"stage1_*": "gabor", "*1_conv1": "free"}, "equally long"),
    ({"conv1": "sideways"}, "unknown kernel source"),
  ],
)
def test_bad_kernel_specs_raise_value_errors_naming_the_allowed_layers(kernels, match):
  with pytest.raises(ValueError, match=match):
    _abstract("resnet20" if "stage" in str(kernels) else "simple_cnn", kernels=kernels)


def test_bankmix_layer_is_found_by_name():
  spec = {"source": "bankmix", "bank": {"source": "gabor"}, "num_filters": 4}
  layers = conv_layers(_abstract("alexnet_small", kernels={"conv2": spec}))
  assert type(layers["conv2"]).__name__ == "BankMixConv"


@pytest.mark.parametrize(
  "name,num_classes,image_shape",
  [(name, classes, shape) for name, classes, shape, _ in PARAMETER_COUNTS]
  + [("resnet20", 10, (28, 28, 1)), ("resnet18", 10, (64, 64, 3))],
)
@pytest.mark.slow
def test_output_shapes_abstractly(name, num_classes, image_shape):
  model = _abstract(name, num_classes, image_shape)
  model.eval()
  images = jax.ShapeDtypeStruct((2, *image_shape), jnp.float32)
  out = nnx.eval_shape(lambda m, x: m(x), model, images)
  assert out.shape == (2, num_classes)


# Real (compiled) forwards: one model of each code path, small. Every new kernel shape costs
# an initialiser compile on CPU, so the tests below reuse a few small configurations.
def _small_resnet(**kwargs):
  return CifarResNet(10, (8, 8, 3), depth=8, width=0.5, rngs=nnx.Rngs(0), **kwargs)


def test_real_forward_simple_cnn():
  model = MODELS["simple_cnn"](10, (28, 28, 1), rngs=nnx.Rngs(0))
  model.eval()
  logits = nnx.jit(lambda m, x: m(x))(model, _images((2, 28, 28, 1)))
  assert logits.shape == (2, 10) and np.all(np.isfinite(logits))


def test_real_forward_imagenet_resnet_stem_and_bottleneck():
  """7x7/2 stem, padded max pool and bottleneck blocks, shallow (ResNet-50's compile is slow)."""
  model = ResNet(
    10, (64, 64, 3), stage_sizes=(1, 1), block="bottleneck", width=0.25, rngs=nnx.Rngs(0)
  )
  assert model.conv_layer_names == (
    "conv1",
    "stage1_block1_conv1",
    "stage1_block1_conv2",
    "stage1_block1_conv3",
    "stage1_block1_shortcut",
    "stage2_block1_conv1",
    "stage2_block1_conv2",
    "stage2_block1_conv3",
    "stage2_block1_shortcut",
  )
  model.eval()
  logits = nnx.jit(lambda m, x: m(x))(model, _images((1, 64, 64, 3)))
  assert logits.shape == (1, 10) and np.all(np.isfinite(logits))


def test_alexnet_2012_at_224_real_forward_with_lrn():
  """The one real 224x224 forward: the FC input size follows from conv1's padding 2."""
  model = AlexNet(5, (224, 224, 3), width=0.125, lrn=True, rngs=nnx.Rngs(0))
  assert model.fc6.in_features == 6 * 6 * 32
  model.eval()
  logits = nnx.jit(lambda m, x: m(x))(model, _images((1, 224, 224, 3)))
  assert logits.shape == (1, 5) and np.all(np.isfinite(logits))


def test_local_response_norm_matches_the_papers_formula():
  x = np.asarray(_images((2, 3, 3, 7))) * 30
  expected = np.empty_like(x)
  for c in range(7):
    window = x[..., max(0, c - 2) : min(7, c + 3)]
    expected[..., c] = x[..., c] / (2.0 + 1e-4 * np.sum(window**2, axis=-1)) ** 0.75
  np.testing.assert_allclose(local_response_norm(jnp.asarray(x)), expected, rtol=1e-5)


def _split_step(model, with_grads=False):
  """Split ``model`` and jit a functional step on its state: merge, forward (and gradients).

  The mode (train/eval) is part of the graphdef, so it must be set before splitting.
  Returns the state and ``step(state, x) -> (logits, grads or None, new_state)``.
  """
  graphdef, state = nnx.split(model)

  def loss_fn(model, x):
    logits = model(x)
    return jnp.mean(logits**2), logits

  @jax.jit
  def step(state, x):
    model = nnx.merge(graphdef, state)
    if with_grads:
      (_, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, x)
    else:
      logits, grads = model(x), None
    return logits, grads, nnx.state(model)

  return state, step


def _leaves(state, variable_type):
  return jax.tree.leaves(nnx.state(state, variable_type))


def _same(a, b):
  return all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


@pytest.mark.parametrize(
  "make,shape,with_grads",
  [
    (
      lambda: AlexNetSmall(10, (16, 16, 3), width=0.25, rngs=nnx.Rngs(params=0, dropout=1)),
      (16, 16, 3),
      True,
    ),
    (
      lambda: AlexNet(10, (63, 63, 3), width=0.125, rngs=nnx.Rngs(params=0, dropout=1)),
      (63, 63, 3),
      False,
    ),
  ],
  ids=["alexnet_small", "alexnet"],
)
@pytest.mark.slow
def test_dropout_only_in_train_mode_inside_a_jitted_functional_step(make, shape, with_grads):
  model = make()
  x = _images((4, *shape))
  model.train()
  state, step = _split_step(model, with_grads)
  logits, grads, state1 = step(state, x)
  again, _, _ = step(state, x)
  np.testing.assert_array_equal(logits, again)  # the masks are a function of the state
  assert not _same(_leaves(state, nnx.RngCount), _leaves(state1, nnx.RngCount))
  next_logits, _, _ = step(state1, x)
  if not isinstance(model, AlexNetSmall):  # (there, BatchNorm statistics changed too)
    assert not np.allclose(logits, next_logits)  # only the dropout masks differ
  if with_grads:
    assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in _leaves(grads, nnx.Param))

  model.eval()
  state, step = _split_step(model)
  logits, _, after = step(state, x)
  assert _same(_leaves(state, nnx.RngCount), _leaves(after, nnx.RngCount))  # no mask drawn
  alone, _, _ = step(state, x[:1])
  np.testing.assert_allclose(logits[:1], alone, rtol=1e-5, atol=1e-5)


def test_batch_norm_uses_batch_statistics_in_train_mode_and_running_ones_in_eval():
  model = _small_resnet()
  x = _images((4, 8, 8, 3))
  model.train()
  state, step = _split_step(model)
  logits, _, after = step(state, x)
  assert logits.shape == (4, 10) and np.all(np.isfinite(logits))
  assert not _same(_leaves(state, nnx.BatchStat), _leaves(after, nnx.BatchStat))
  alone, _, _ = step(state, x[:1])
  assert not np.allclose(logits[:1], alone, atol=1e-4)  # depends on the other images
  model.eval()
  state, step = _split_step(model)
  logits, _, after = step(state, x)
  alone, _, _ = step(state, x[:1])
  np.testing.assert_allclose(logits[:1], alone, rtol=1e-5, atol=1e-5)
  assert _same(_leaves(state, nnx.BatchStat), _leaves(after, nnx.BatchStat))


def test_hybrid_1x1_shortcuts_have_finite_outputs_and_gradients():
  """A hybrid 1x1 shortcut has a 1x1 Gabor group (identically zero when zero-mean); it must
  still run and differentiate cleanly ('*': 'hybrid' builds it, see the abstract test above;
  hybrid 3x3 layers are tested in tests/nn_conv_test.py)."""
  model = _small_resnet(kernels={"*_shortcut": "hybrid"})
  assert isinstance(model.stage2_block1.shortcut.kernel_source, HybridKernel)
  model.train()
  state, step = _split_step(model, with_grads=True)
  logits, grads, _ = step(state, _images((2, 8, 8, 3)))
  assert np.all(np.isfinite(logits))
  gabor_grads = _leaves(grads, KernelParam)
  assert len(gabor_grads) == 2 * 2  # theta and frequency of two shortcuts
  assert all(np.all(np.isfinite(g)) for g in gabor_grads)


def test_bfloat16_compute_keeps_float32_parameters():
  model = _small_resnet(dtype=jnp.bfloat16)
  model.eval()
  assert model(_images((2, 8, 8, 3))).dtype == jnp.bfloat16
  assert {p.dtype for p in _leaves(nnx.state(model), nnx.Param)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize(
  "build,match",
  [
    (lambda: CifarResNet(10, (32, 32, 3), depth=21, rngs=nnx.Rngs(0)), "6n\\+2.*21"),
    (lambda: CifarResNet(10, (32, 32, 3), shortcut="dense", rngs=nnx.Rngs(0)), "dense"),
    (lambda: ResNet(10, (32, 32, 3), block="wide", rngs=nnx.Rngs(0)), "wide"),
    (lambda: ResNet(10, (32, 32, 3), stage_sizes=(2, 0), rngs=nnx.Rngs(0)), "stage_sizes"),
    (lambda: AlexNet(10, (32, 32, 3), rngs=nnx.Rngs(0)), "at least 63x63"),
    (lambda: AlexNetSmall(10, (32, 32), rngs=nnx.Rngs(0)), "image_shape"),
  ],
)
def test_bad_model_arguments_raise_value_errors(build, match):
  with pytest.raises(ValueError, match=match):
    nnx.eval_shape(build)


def test_build_model_from_a_config_section():
  config = ml_collections.ConfigDict(
    {
      "name": "resnet20",
      "first_layer": "gabor",
      "width": 0.5,
      "first_kernel_size": 0,
      "kernels": {"*_shortcut": {"source": "random", "seed": 3}},
    }
  )
  model = nnx.eval_shape(
    lambda: build_model(config, num_classes=7, image_shape=(32, 32, 3), rngs=nnx.Rngs(0))
  )
  layers = conv_layers(model)
  assert isinstance(layers["conv1"].kernel_source, GaborKernel)
  assert type(layers["stage2_block1_shortcut"].kernel_source).__name__ == "FrozenArrayKernel"
  assert model.fc.out_features == 7 and layers["conv1"].out_features == 8
  config.name = "resnet9000"
  with pytest.raises(ValueError, match="resnet9000.*resnet20"):
    build_model(config, num_classes=7, image_shape=(32, 32, 3), rngs=nnx.Rngs(0))
