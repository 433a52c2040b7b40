"""Checks that refuse a run before any work, each with one message naming the key.

``validate_config`` needs only the config, the mesh and the workdir, and runs
the checks of every config section (run length and cadences, optim,
checkpoint, tracking, data, model, workdir) before the data loads or anything
compiles, so a bad value costs seconds, not a checkpoint interval;
``check_model`` needs
the abstract model and the dataset's image shape, and traces one abstract
forward pass (no compilation, no memory) so that a model that cannot run on
these images fails here with its config keys named, instead of deep inside the
compilation of the train step.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
from flax import nnx

from hybridconv import data, models, nn, run_layout, sharding, tracking
from hybridconv.data import subset
from hybridconv.training import cadence, checkpointing, nonfinite, optim
from hybridconv.training import state as ts
from hybridconv.training import workdir as workdir_lib


def validate_config(config, mesh, workdir: str | None = None) -> None:
  """Refuses settings the run cannot honour, each with one message naming the key.

  Args:
    config: the run's config.
    mesh: the device mesh (batch sizes must divide over it).
    workdir: the run directory, checked too when given (absolute path).
  """
  sharding.check_batch_size("batch_size", config.batch_size, mesh)
  sharding.check_batch_size("eval_batch_size", config.eval_batch_size, mesh)
  check_values(config)
  if workdir is not None:
    workdir_lib.check_workdir(workdir, os.path.join(workdir, run_layout.CHECKPOINT_DIR))


def check_values(config) -> None:
  """The checks that need neither devices nor a workdir (the study runner checks every
  point with them before the first trains)."""
  sharding.check_cpu_devices(config.cpu_devices)
  subset.check_subset_config(config.data, config.batch_size)
  ts.compute_dtype(config.compute_dtype)
  cadence.check_config(config)
  if not 0 <= config.label_smoothing < 1:
    raise ValueError(f"config.label_smoothing={config.label_smoothing} must be in [0, 1)")
  nonfinite.check_config(config.nan_policy, config.max_consecutive_skips)
  optim.check_config(config.optim)
  checkpointing.check_keep(config.checkpoint.keep, config.checkpoint.keep_best)
  tracking.check_config(config.tracking)
  data.check_config(config.data)
  models.check_config(config.model)


def model_context(model_config, image_shape) -> str:
  """Which config keys and data shape a model error is about."""
  h, w, c = image_shape
  return f"(building model.name={model_config.name!r} for {h}x{w}x{c} images)"


def _kernel_extent(layer) -> tuple[int, int]:
  return tuple(
    (k - 1) * d + 1 for k, d in zip(layer.kernel_size, layer.kernel_dilation, strict=True)
  )


def check_model(
  model_config,
  abstract_model: nnx.Module,
  model_fns: ts.ModelFunctions,
  *,
  image_shape,
  num_classes: int,
) -> None:
  """Refuses a first conv kernel larger than the images, and any model that cannot run on them.

  Only the first layer's kernel is compared with its input: deeper layers of
  ImageNet-style networks legitimately see feature maps smaller than their 3x3
  kernels when trained on small images (e.g. ResNet-18 on 64x64).

  Raises:
    ValueError: naming the layer's config key, its kernel size and the image size.
  """
  layers = nn.conv_layers(abstract_model)
  if layers:
    name, first = next(iter(layers.items()))
    kh, kw = _kernel_extent(first)
    if kh > image_shape[0] or kw > image_shape[1]:
      raise ValueError(
        f"conv layer {name!r} (model.first_layer / model.kernels) has a {kh}x{kw} kernel, "
        f"larger than the {image_shape[0]}x{image_shape[1]} input images; allowed: kernels "
        f"no larger than the images {model_context(model_config, image_shape)}"
      )
  _, params, _, model_state = ts.split_model(abstract_model)
  images = jax.ShapeDtypeStruct((2, *image_shape), jnp.float32)

  def forward(params, model_state, images):
    return model_fns.apply(params, model_state, images, train=True, key=jax.random.key(0))[0]

  try:
    logits = jax.eval_shape(forward, params, model_state, images)
  except (TypeError, ValueError) as error:
    raise ValueError(f"{error} {model_context(model_config, image_shape)}") from error
  if logits.shape != (2, num_classes):
    raise ValueError(
      f"the model returns logits of shape {logits.shape[1:]} per image, expected "
      f"({num_classes},) {model_context(model_config, image_shape)}"
    )
