"""Device-resident input pipeline: the whole dataset lives on the accelerators.

For datasets that fit in device memory (MNIST, Fashion-MNIST, CIFAR, gratings)
the uint8 arrays are copied to every device once, and a training batch is
gathered, augmented and normalised by one jitted call. Nothing iterates on the
host, so there is no iterator state: batch ``s`` is a pure function of
``(seed, s)``:

* epoch ``e = s // steps_per_epoch`` uses the permutation
  ``jax.random.permutation(fold_in(fold_in(key(seed), 0), e), N)``;
* batch ``s`` takes the positions ``[(s % steps_per_epoch) * B, ... + B)`` of it,
  so each epoch visits every example at most once; the ``N mod B`` examples
  left at the end of a permutation are dropped for that epoch (a different
  set each epoch);
* augmentation draws from ``fold_in(fold_in(key(seed), 1), s)``.

Resuming at step ``s`` therefore needs only ``s``. Random draws use JAX's
partitionable threefry, so batches do not depend on the number of devices.

Batches come out as global arrays sharded over the mesh axis ``'data'``
(``NamedSharding(mesh, P('data'))``); the dataset arrays are replicated.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hybridconv.data.augment import Augment, augment_key, channel_stats, prepare_batch
from hybridconv.data.dataset import ArrayDataset
from hybridconv.sharding import DATA_AXIS, check_batch_size

# Folded into the root key before the epoch; augmentation uses stream 1
# (hybridconv.data.augment.augment_key).
_PERMUTATION_STREAM = 0

Batch = dict[str, Array]


def data_axis_size(mesh: Mesh) -> int:
  """Size of the mesh axis ``'data'`` over which batches are split."""
  if DATA_AXIS not in mesh.shape:
    raise ValueError(
      f"the mesh needs an axis named {DATA_AXIS!r} to shard batches over; it has "
      f"axes {tuple(mesh.shape)}"
    )
  return int(mesh.shape[DATA_AXIS])


def check_step(step: int) -> int:
  if isinstance(step, bool) or int(step) != step or step < 0:
    raise ValueError(f"step must be an int >= 0, got {step!r}")
  return int(step)


def put_replicated(array: np.ndarray, sharding: NamedSharding) -> Array:
  """Copies a host array to every device of ``sharding`` (works multi-process too)."""
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def pad_to_multiple(
  images: np.ndarray, labels: np.ndarray, multiple: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Zero-pads an eval split to a multiple of the batch size; returns (images, labels, mask)."""
  num = len(labels)
  padded = -(-num // multiple) * multiple
  mask = np.arange(padded) < num
  images = np.concatenate([images, np.zeros((padded - num, *images.shape[1:]), images.dtype)])
  labels = np.concatenate([labels, np.zeros((padded - num,), labels.dtype)])
  return images, labels, mask


def _epoch_permutation(seed, epoch, *, num_examples: int) -> Array:
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _PERMUTATION_STREAM), epoch)
  return jax.random.permutation(key, num_examples)


def _train_batch(
  images, labels, permutation, mean, std, seed, step, offset, *, batch_size: int, augment: Augment
) -> Batch:
  indices = jax.lax.dynamic_slice_in_dim(permutation, offset, batch_size)
  key = augment_key(jax.random.key(seed), step)
  batch_images = prepare_batch(jnp.take(images, indices, axis=0), key, mean, std, augment)
  return {"image": batch_images, "label": jnp.take(labels, indices, axis=0)}


def _eval_batch(images, labels, mask, mean, std, offset, *, batch_size: int) -> Batch:
  take = functools.partial(jax.lax.dynamic_slice_in_dim, start_index=offset, slice_size=batch_size)
  return {
    "image": prepare_batch(take(images), None, mean, std, Augment()),
    "label": take(labels),
    "mask": take(mask),
  }


# Cached so that pipelines with the same settings share one compiled program.
# The seed and step enter as Python ints (keys are made inside), so every
# argument is either such a scalar or an array on the mesh, also with several
# processes.
@functools.cache
def _jitted_permutation(num_examples: int, sharding: NamedSharding):
  return jax.jit(
    functools.partial(_epoch_permutation, num_examples=num_examples), out_shardings=sharding
  )


@functools.cache
def _jitted_train_batch(batch_size: int, augment: Augment, sharding: NamedSharding):
  return jax.jit(
    functools.partial(_train_batch, batch_size=batch_size, augment=augment), out_shardings=sharding
  )


@functools.cache
def _jitted_eval_batch(batch_size: int, sharding: NamedSharding):
  return jax.jit(functools.partial(_eval_batch, batch_size=batch_size), out_shardings=sharding)


class DevicePipeline:
  """Batches gathered from device-resident uint8 arrays inside jit.

  Args:
    dataset: the in-memory dataset.
    global_batch_size: training batch size over all devices; a multiple of the
      size of the mesh axis ``'data'``, at most the training set size.
    eval_batch_size: eval batch size over all devices, same divisibility rule.
    seed: seeds the epoch permutations and augmentation.
    mesh: a mesh with an axis ``'data'``.
    augment_config: ``data.augment`` (``crop_padding``, ``horizontal_flip``), an
      :class:`Augment`, or None for no augmentation.
    validation: ``(images, labels)`` held out of the training split
      (:func:`hybridconv.data.subset.hold_out`), evaluated as the split
      ``'validation'``; None for none.
  """

  def __init__(
    self,
    dataset: ArrayDataset,
    *,
    global_batch_size: int,
    eval_batch_size: int,
    seed: int,
    mesh: Mesh,
    augment_config=None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
  ):
    num_shards = data_axis_size(mesh)
    check_batch_size("batch_size", global_batch_size, num_shards)  # config.batch_size
    check_batch_size("eval_batch_size", eval_batch_size, num_shards)
    num_train = len(dataset.train_labels)
    if global_batch_size > num_train:
      raise ValueError(
        f"global_batch_size={global_batch_size} exceeds the {num_train} training "
        f"examples of {dataset.name}"
      )
    self.augment = Augment.from_config(augment_config)
    self.num_classes = dataset.num_classes
    self.image_shape = dataset.image_shape
    self.name = dataset.name
    self.global_batch_size = int(global_batch_size)
    self.eval_batch_size = int(eval_batch_size)
    self.num_train_examples = num_train
    self.num_eval_examples = len(dataset.test_labels)
    self.steps_per_epoch = num_train // self.global_batch_size
    self.mean, self.std = channel_stats(dataset.train_images)

    replicated = NamedSharding(mesh, PartitionSpec())
    batch_sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    self._train = tuple(
      put_replicated(a, replicated) for a in (dataset.train_images, dataset.train_labels)
    )
    splits = {"test": (dataset.test_images, dataset.test_labels)}
    if validation is not None:
      splits["validation"] = validation
    self.eval_splits = tuple(splits)
    self.num_validation_examples = len(validation[1]) if validation is not None else 0
    # split -> (padded images, labels, mask) on the devices, and its number of batches.
    self._eval: dict[str, tuple[tuple[Array, ...], int]] = {}
    for split, (images, labels) in splits.items():
      arrays = pad_to_multiple(images, labels, self.eval_batch_size)
      self._eval[split] = (
        tuple(put_replicated(a, replicated) for a in arrays),
        len(arrays[1]) // self.eval_batch_size,
      )
    self.num_eval_batches = self._eval["test"][1]
    self._stats = tuple(put_replicated(a, replicated) for a in (self.mean, self.std))
    self.seed = int(seed)
    # Dataset arrays are arguments, not closed-over constants, so they are not
    # baked into the compiled program.
    self._train_fn = _jitted_train_batch(self.global_batch_size, self.augment, batch_sharding)
    self._eval_fn = _jitted_eval_batch(self.eval_batch_size, batch_sharding)
    self._permutation_fn = _jitted_permutation(num_train, replicated)
    self._cached_permutation: tuple[int, Array] | None = None

  def epoch_permutation(self, epoch: int) -> Array:
    """The order of training examples in ``epoch`` (cached for the current epoch)."""
    if self._cached_permutation is None or self._cached_permutation[0] != epoch:
      permutation = self._permutation_fn(self.seed, epoch)
      self._cached_permutation = (epoch, permutation)
    return self._cached_permutation[1]

  def train_batch(self, step: int) -> Batch:
    """Training batch ``step``: ``{'image': float32 (B,H,W,C), 'label': int32 (B,)}``.

    A pure function of ``(seed, step)``; sharded over the mesh axis ``'data'``.
    """
    step = check_step(step)
    epoch, position = divmod(step, self.steps_per_epoch)
    return self._train_fn(
      *self._train,
      self.epoch_permutation(epoch),
      *self._stats,
      self.seed,
      step,
      position * self.global_batch_size,
    )

  def eval_batches(self, split: str = "test") -> Iterator[Batch]:
    """``split`` ('test', or 'validation' when held out) in fixed order; ``'mask'`` is False
    on the last batch's padding."""
    arrays, num_batches = self._eval[split]
    for index in range(num_batches):
      yield self._eval_fn(*arrays, *self._stats, index * self.eval_batch_size)

  def get_state(self) -> None:
    """Nothing to checkpoint: every batch is a pure function of ``(seed, step)``."""
    return None

  def set_state(self, state: None) -> None:
    del state  # see get_state
