"""The train state as plain pytrees, and the pure model function the step calls.

An NNX model is split once into static graph definitions and state pytrees:

* ``params``: every ``nnx.Param`` -- what the optimiser updates;
* ``model_state``: everything else that must persist -- BatchNorm statistics
  (``nnx.BatchStat``, written by the forward pass) and frozen fixed/random
  kernels (``hybridconv.nn.FrozenKernel``, never written). Both are saved in
  checkpoints;
* RNG streams (``nnx.RngState``) are *not* state: each step builds them afresh
  from ``fold_in(rng, step)``, so dropout noise depends only on (seed, step)
  and a resumed run draws exactly what an uninterrupted one would.

The jitted step is then a pure function of pytrees, with no Python objects
mutated inside it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax import Array

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@struct.dataclass
class TrainState:
  """Everything a step reads and writes; the unit that is checkpointed.

  Attributes:
    step: int32 scalar, number of updates applied so far.
    params: ``nnx.State`` of ``nnx.Param`` values.
    model_state: ``nnx.State`` of the other variables (batch stats, frozen kernels).
    opt_state: the optax state for ``params``.
    rng: uint32 key data (``jax.random.key_data``) of the run's base training key.
  """

  step: Array
  params: nnx.State
  model_state: nnx.State
  opt_state: optax.OptState
  rng: Array


def compute_dtype(name: str):
  """The jnp dtype for ``config.compute_dtype``."""
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"config.compute_dtype={name!r} is not one of {tuple(COMPUTE_DTYPES)}")
  return COMPUTE_DTYPES[name]


def fresh_rng_state(abstract_rng_state, key: Array):
  """RNG stream variables for one call, derived from ``key`` alone.

  Every stream key gets ``fold_in(key, i)`` (i = its position in the state) and
  every counter restarts at zero: the same key always gives the same noise.
  """
  leaves, treedef = jax.tree_util.tree_flatten(abstract_rng_state)
  fresh = []
  for i, leaf in enumerate(leaves):
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      stream_key = jax.random.fold_in(key, i)
      fresh.append(jax.random.split(stream_key, leaf.shape) if leaf.shape else stream_key)
    else:
      fresh.append(jnp.zeros(leaf.shape, leaf.dtype))
  return jax.tree_util.tree_unflatten(treedef, fresh)


@dataclasses.dataclass(frozen=True, eq=False)
class ModelFunctions:
  """Static halves of the split model and the pure apply function.

  Attributes:
    train_graphdef: graph of the model in training mode (batch statistics, dropout on).
    eval_graphdef: graph in evaluation mode (running statistics, dropout off).
    abstract_rng_state: shapes/dtypes of the model's RNG stream variables.
    dtype: compute dtype of activations (parameters stay float32).
  """

  train_graphdef: nnx.GraphDef
  eval_graphdef: nnx.GraphDef
  abstract_rng_state: nnx.State
  dtype: object

  def apply(self, params, model_state, images: Array, *, train: bool, key: Array):
    """Logits ``(B, classes)`` and the model state after the forward pass.

    Args:
      params: ``TrainState.params``.
      model_state: ``TrainState.model_state``.
      images: ``(B, H, W, C)`` float, normalised.
      train: training mode (batch statistics are updated, dropout is on).
      key: typed PRNG key for this call's RNG streams.
    """
    graphdef = self.train_graphdef if train else self.eval_graphdef
    rng_state = fresh_rng_state(self.abstract_rng_state, key)
    # copy=True: fresh Variables owned by the current trace (inside grad), which
    # the forward pass may then write (BatchNorm statistics).
    model = nnx.merge(graphdef, params, rng_state, model_state, copy=True)
    logits = model(images.astype(self.dtype))
    _, _, _, new_model_state = nnx.split(model, nnx.Param, nnx.RngState, ...)
    return logits, new_model_state


def split_model(model: nnx.Module):
  """``(graphdef, params, rng_state, model_state)`` with the filters used everywhere."""
  return nnx.split(model, nnx.Param, nnx.RngState, ...)


def model_functions(abstract_model: nnx.Module, dtype) -> ModelFunctions:
  """Train and eval graph definitions of an (abstract) model.

  Switching mode changes static attributes only, so both graphs share one state
  layout. The model is left in eval mode.
  """
  abstract_model.train()
  train_graphdef, _, rng_state, _ = split_model(abstract_model)
  abstract_model.eval()
  eval_graphdef, _, _, _ = split_model(abstract_model)
  return ModelFunctions(train_graphdef, eval_graphdef, rng_state, dtype)


def training_keys(seed: int) -> tuple[Array, Array]:
  """(initialisation key, base training key) as typed keys, both from ``seed``."""
  root = jax.random.key(seed)
  return jax.random.fold_in(root, 0), jax.random.fold_in(root, 1)


def step_key(state: TrainState) -> Array:
  """This step's key: the base key folded with the step count."""
  return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)


def abstract_like(tree):
  """``ShapeDtypeStruct``s carrying the concrete shardings of ``tree`` (restore targets)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
