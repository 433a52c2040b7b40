"""The model zoo: SimpleCNN, AlexNet (2012 and small-image), ResNet family.

Each model takes a kernel source per conv layer (see
:mod:`hybridconv.models.layer_specs`); :func:`build_model` builds one from the
``model`` section of a config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flax import nnx

from hybridconv.models import resnet
from hybridconv.models.alexnet import AlexNet, AlexNetSmall, local_response_norm
from hybridconv.models.layer_specs import resolve_sources
from hybridconv.models.resnet import CifarResNet, ResNet
from hybridconv.models.simple_cnn import SimpleCNN
from hybridconv.nn import (
  conv_layers,  # the zoo's conv layers by name, as model.kernels keys them
  sources,
)

# name -> constructor (num_classes, image_shape, *, first_layer, kernels, width, dtype, rngs).
MODELS: dict[str, Callable[..., nnx.Module]] = {
  "simple_cnn": SimpleCNN,
  "alexnet": AlexNet,
  "alexnet_small": AlexNetSmall,
  "resnet20": resnet.resnet20,
  "resnet56": resnet.resnet56,
  "resnet18": resnet.resnet18,
  "resnet34": resnet.resnet34,
  "resnet50": resnet.resnet50,
  "resnet101": resnet.resnet101,
  "resnet152": resnet.resnet152,
}


def check_config(model_config: Any) -> None:
  """Refuses an unknown model name or kernel spec from the config alone, before any data loads.

  Raises:
    ValueError: naming the key and what is allowed.
  """
  if model_config.name not in MODELS:
    raise ValueError(f"model.name={model_config.name!r} is not one of {sorted(MODELS)}")
  kernels = dict(model_config.kernels or {})
  specs = [
    ("model.first_layer", model_config.first_layer),
    *((f"model.kernels[{key!r}]", spec) for key, spec in kernels.items()),
  ]
  for where, spec in specs:
    spec = spec.to_dict() if hasattr(spec, "to_dict") else spec
    try:
      sources.parse(spec)
    except ValueError as error:  # named as layer_specs.resolve_sources names it
      raise ValueError(f"{where}={spec!r}: {error}") from error


def build_model(
  model_config: Any,
  *,
  num_classes: int,
  image_shape: tuple[int, int, int],
  rngs: nnx.Rngs,
  dtype=None,
  seed: int | None = None,
) -> nnx.Module:
  """A model from a config section with keys ``name``, ``first_layer``, ``kernels``, ``width``,
  ``first_kernel_size``.

  ``seed`` (the run's seed) seeds random kernel sources that name no seed of
  their own, folded with each layer's name (:func:`resolve_sources`).

  Raises:
    ValueError: for an unknown model name or a bad kernel spec (before any compilation).
  """
  name = model_config.name
  if name not in MODELS:
    raise ValueError(f"model.name={name!r} is not one of {sorted(MODELS)}")
  kernels = dict(model_config.kernels) if model_config.kernels else {}
  first_layer = model_config.first_layer
  if hasattr(first_layer, "to_dict"):
    first_layer = first_layer.to_dict()
  kernels = {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in kernels.items()}
  extra = {}
  if model_config.first_kernel_size:
    if name != "simple_cnn":
      raise ValueError(
        f"model.first_kernel_size={model_config.first_kernel_size!r} is only for "
        f"simple_cnn (0 = the model's own size); {name} fixes its kernel sizes"
      )
    extra["first_kernel_size"] = model_config.first_kernel_size
  return MODELS[name](
    num_classes,
    tuple(image_shape),
    first_layer=first_layer,
    kernels=kernels,
    width=model_config.width,
    dtype=dtype,
    kernel_seed=seed,
    rngs=rngs,
    **extra,
  )


__all__ = [
  "MODELS",
  "AlexNet",
  "AlexNetSmall",
  "CifarResNet",
  "ResNet",
  "SimpleCNN",
  "build_model",
  "conv_layers",
  "local_response_norm",
  "resolve_sources",
]
