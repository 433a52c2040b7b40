"""Every config variant builds the model it names, with the kernel source it names.

``config_test.py`` checks that each variant builds at all; here the built model
is checked against what the variant promises: the model class, the first
layer's kernel source, the other convs' sources, and the logits' shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from configs import cifar10, fashion_mnist, gratings, imagenet, tiny
from hybridconv import models
from hybridconv.nn import kernel_modules as km

SOURCES = ("free", "gabor", "fixed", "random", "hybrid")
VARIANTS = {
  fashion_mnist: [*SOURCES, "hybrid,long", "gabor,resnet20", "free,resnet20,long", None],
  gratings: [*SOURCES, None],
  cifar10: [*SOURCES, "gabor,alexnet_small", "resnet20", None],
  imagenet: [*SOURCES, "gabor,resnet50", "alexnet", None],
  tiny: [*SOURCES, None],
}
DATA_SHAPES = {
  fashion_mnist: ((28, 28, 1), 10),
  gratings: ((32, 32, 1), 8),
  cifar10: ((32, 32, 3), 10),
  imagenet: ((224, 224, 3), 1000),
  tiny: ((16, 16, 1), 4),
}
KERNEL_TYPES = {
  "free": km.FreeKernel,
  "gabor": km.GaborKernel,
  "fixed": km.FrozenArrayKernel,
  "random": km.FrozenArrayKernel,
  "hybrid": km.HybridKernel,
}
MODEL_TYPES = {
  "simple_cnn": models.SimpleCNN,
  "alexnet": models.AlexNet,
  "alexnet_small": models.AlexNetSmall,
  "resnet20": models.CifarResNet,
  "resnet50": models.ResNet,
}


@pytest.mark.parametrize(
  ("module", "variant"),
  [(m, v) for m, vs in VARIANTS.items() for v in vs],
  ids=lambda x: getattr(x, "__name__", str(x)).split(".")[-1],
)
@pytest.mark.slow
def test_every_variant_builds_the_model_and_first_layer_it_names(module, variant):
  config = module.get_config(variant) if variant else module.get_config()
  image_shape, num_classes = DATA_SHAPES[module]
  model = nnx.eval_shape(
    lambda: models.build_model(
      config.model, num_classes=num_classes, image_shape=image_shape, rngs=nnx.Rngs(0)
    )
  )
  assert type(model) is MODEL_TYPES[config.model.name]
  tokens = (variant or "").split(",")
  named = [t for t in tokens if t in MODEL_TYPES]
  if named:
    assert config.model.name == named[0]  # the variant's model token picks the model
  layers = models.conv_layers(model)
  first = config.model.first_layer
  assert first in SOURCES
  if tokens[0] in SOURCES:
    assert first == tokens[0]
  assert type(layers["conv1"].kernel_source) is KERNEL_TYPES[first]
  rest = [name for name in layers if name != "conv1"]
  assert rest and all(type(layers[n].kernel_source) is km.FreeKernel for n in rest), (
    "only the first layer follows the variant's kernel source"
  )
  graphdef, state = nnx.split(model)
  logits = jax.eval_shape(
    lambda s, x: nnx.merge(graphdef, s)(x),
    state,
    jax.ShapeDtypeStruct((2, *image_shape), jnp.float32),
  )
  assert logits.shape == (2, num_classes)
