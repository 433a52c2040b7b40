"""Global and per-layer gradient, parameter and update norms: the frequent scalars.

Pure functions of pytrees (``nnx.State`` or nested dicts), so they run inside
the jitted train step -- the norms come back with the step's other metrics and
cost a few reductions -- or outside it on host arrays.

Keys (``prefix`` defaults to ``'train/'``)::

  train/grad_norm, train/param_norm, train/update_norm   global L2 norms
  grad_norm/<layer>, param_norm/<layer>, update_norm/<layer>   per layer

A leaf's *layer* is its path without the variable's own name, cut at the
kernel module of a conv layer (``kernel_source``) and joined by '_' (the spec
names of ``model.kernels``), so ``conv1/bias``, a free kernel
``conv1/kernel_source/kernel`` and a hybrid layer's Gabor parameters
``conv1/kernel_source/groups/0/theta`` all count towards ``conv1``, and
``stage1_block1/conv1/kernel_source/kernel`` towards ``stage1_block1_conv1``.
Per-layer keys sit in their own top-level sections so W&B groups them apart
from the ``train/`` curves.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

# Path components at which a layer's name ends (everything below is its kernel).
LAYER_BOUNDARIES = ("kernel_source",)
NORM_NAMES = ("grad_norm", "param_norm", "update_norm")


def layer_name(path: tuple[Any, ...]) -> str:
  """The layer a leaf at ``path`` (a ``tree_flatten_with_path`` key path) belongs to."""
  names = [jax.tree_util.keystr((k,), simple=True, separator="/") for k in path]
  if names and names[-1] == "value":  # an nnx.Variable's payload
    names = names[:-1]
  names = names[:-1] or names  # drop the variable's own name
  for boundary in LAYER_BOUNDARIES:
    if boundary in names:
      names = names[: names.index(boundary)]
  return "_".join(names) or "root"


def layer_sq_norms(tree: Any) -> dict[str, Array]:
  """Sum of squares of the leaves of ``tree`` per layer (float32)."""
  sums: dict[str, Array] = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if not hasattr(leaf, "dtype") or not jnp.issubdtype(leaf.dtype, jnp.inexact):
      continue
    name = layer_name(path)
    value = jnp.sum(jnp.square(jnp.abs(leaf).astype(jnp.float32)))
    sums[name] = sums[name] + value if name in sums else value
  return sums


def norms(tree: Any, name: str, *, prefix: str = "train/") -> dict[str, Array]:
  """``{prefix}{name}`` (global L2 norm) and ``{name}/<layer>`` for one pytree."""
  per_layer = layer_sq_norms(tree)
  total = sum(per_layer.values()) if per_layer else jnp.zeros((), jnp.float32)
  out = {f"{prefix}{name}": jnp.sqrt(total)}
  out.update({f"{name}/{layer}": jnp.sqrt(value) for layer, value in per_layer.items()})
  return out


def scalar_metrics(
  grads: Any, params: Any, updates: Any | None = None, *, prefix: str = "train/"
) -> dict[str, Array]:
  """Gradient, parameter and (if given) update norms, global and per layer.

  Args:
    grads: gradients, same structure as ``params``.
    params: parameters (after the update, to match ``optax.global_norm(params)``
      as logged by the train step, or before -- the caller decides).
    updates: the optimiser's updates (``new_params - params``), or None.
    prefix: prefix of the three global keys.

  Returns:
    scalar arrays keyed as in the module docstring; the global norms equal
    ``optax.global_norm`` of the same trees.
  """
  out = norms(grads, "grad_norm", prefix=prefix)
  out.update(norms(params, "param_norm", prefix=prefix))
  if updates is not None:
    out.update(norms(updates, "update_norm", prefix=prefix))
  return out


def without_layer_norms(scalars: dict[str, Any]) -> dict[str, Any]:
  """``scalars`` minus the per-layer norms (for log events off ``tracking.scalars_every``)."""
  return {k: v for k, v in scalars.items() if k.split("/", 1)[0] not in NORM_NAMES}
