"""Class-balanced training subsets: how many training images a run sees.

Small-sample studies (100, 1,000, 10,000 images) need a subset of the training
split that is

* **balanced**: every class gets ``size // num_classes`` images; the
  ``size % num_classes`` left over go one each to classes chosen by the seed
  (a class with too few images gives all it has and the shortfall goes to the
  others, so ``size`` is always met when the split is large enough);
* **deterministic**: a pure function of ``(labels, size, seed)``, identical on
  every machine, process and library version. Order within a class comes from
  a splitmix64 hash of ``(seed, index)`` -- not ``numpy.random``, whose
  streams NumPy does not promise to keep across versions;
* **paired across arms**: the seed is the run's seed unless
  ``data.subset_seed`` pins it, so seed ``s`` of every arm of a study trains on
  the same images.

The subset is applied to the training split only, after the optional validation
hold-out (:func:`hold_out`, ``data.validation_size``) is removed from it; the
test split is always evaluated whole. :func:`subset_record` describes the subset for the workdir
(``train_subset.json``): the recipe, per-class counts and a SHA-256 of the
indices, so a resumed run can prove it trains on the same images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

# splitmix64 constants (Steele, Lea and Flood 2014).
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(values: np.ndarray) -> np.ndarray:
  """The splitmix64 finaliser of uint64 ``values`` (a fixed, portable hash)."""
  with np.errstate(over="ignore"):
    z = values.astype(np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _ranks(seed: int, indices: np.ndarray, stream: int) -> np.ndarray:
  """A seeded pseudo-random sort key per index (distinct seeds give unrelated orders)."""
  base = splitmix64(np.array([seed * 1_000_003 + stream], dtype=np.uint64))[0]
  return splitmix64(indices.astype(np.uint64) ^ base)


def check_subset_config(data_config, global_batch_size: int) -> None:
  """The checks of ``data.train_size`` / ``data.subset_seed`` that need no data (run first)."""
  check_train_size(data_config.train_size, global_batch_size=global_batch_size)
  seed = data_config.subset_seed
  if isinstance(seed, bool) or not isinstance(seed, int) or seed < -1:
    raise ValueError(f"data.subset_seed={seed!r} must be an int >= 0, or -1 to follow config.seed")


def check_train_size(
  train_size: int,
  *,
  global_batch_size: int,
  num_classes: int = 1,
  split_size: int | None = None,
) -> None:
  """Refuses a ``data.train_size`` no balanced subset can meet: the one rule, checked from the
  config alone (``split_size`` None: before any data) and again once the split is known.

  Raises:
    ValueError: one line naming the value and the allowed range.
  """
  if isinstance(train_size, bool) or not isinstance(train_size, int) or train_size < 0:
    raise ValueError(f"data.train_size={train_size!r} must be an int >= 0 (0 = all images)")
  if train_size == 0:
    return
  low = max(num_classes, global_batch_size)
  if train_size < low or (split_size is not None and train_size > split_size):
    needs = f"the global batch (batch_size={global_batch_size})"
    if split_size is not None:
      needs = (
        f"the number of classes ({num_classes}) and {needs}, and at most the {split_size} "
        "images of the training split"
      )
    raise ValueError(
      f"data.train_size={train_size} is outside [{low}, {split_size or 'split size'}]: it must "
      f"be at least {needs} (0 = all)"
    )


def balanced_indices(labels: np.ndarray, *, num_classes: int, size: int, seed: int) -> np.ndarray:
  """Sorted indices of a class-balanced subset of ``size`` examples.

  Args:
    labels: int labels of the whole training split.
    num_classes: number of classes (labels lie in ``[0, num_classes)``).
    size: subset size, ``num_classes <= size <= len(labels)``.
    seed: non-negative int; the same seed gives the same subset.

  Returns:
    int64 indices into ``labels``, ascending.
  """
  labels = np.asarray(labels)
  if not num_classes <= size <= len(labels):
    raise ValueError(f"subset size {size} must lie in [{num_classes}, {len(labels)}]")
  if isinstance(seed, bool) or int(seed) != seed or seed < 0:
    raise ValueError(f"subset seed must be an int >= 0, got {seed!r}")
  available = np.bincount(labels, minlength=num_classes)
  quota = _quotas(available, size, seed)
  chosen = []
  for label in range(num_classes):
    members = np.flatnonzero(labels == label)
    order = np.argsort(_ranks(seed, members, stream=1), kind="stable")
    chosen.append(members[order[: quota[label]]])
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def _quotas(available: np.ndarray, size: int, seed: int) -> np.ndarray:
  """Images per class: equal shares, the remainder to seeded classes, capped by availability."""
  num_classes = len(available)
  quota = np.zeros(num_classes, np.int64)
  remaining = size
  # The class order that receives leftovers: fixed by the seed, so the remainder
  # is spread differently for different seeds but always the same for one seed.
  leftover_order = np.argsort(_ranks(seed, np.arange(num_classes), stream=0), kind="stable")
  open_classes = [c for c in leftover_order if available[c] > 0]
  while remaining > 0 and open_classes:
    share, extra = divmod(remaining, len(open_classes))
    for position, label in enumerate(open_classes):
      take = min(share + (position < extra), available[label] - quota[label])
      quota[label] += take
      remaining -= take
    open_classes = [c for c in open_classes if quota[c] < available[c]]
  return quota


def hold_out(
  labels: np.ndarray, *, num_classes: int, size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """``(validation, remaining)`` indices: a class-balanced hold-out of ``size`` and the rest.

  The hold-out is :func:`balanced_indices` with its own ``seed`` (``data.validation_seed``,
  not the run's), so every run of a study holds out the same images, and every training
  subset is then drawn from ``remaining`` -- disjoint from the validation split by
  construction. Both are ascending indices into ``labels``.
  """
  if not num_classes <= size < len(labels):
    raise ValueError(
      f"data.validation_size={size} is outside [{num_classes}, {len(labels) - 1}]: at least one "
      f"image per class, and fewer than the {len(labels)} images of the training split"
    )
  validation = balanced_indices(labels, num_classes=num_classes, size=size, seed=seed)
  remaining = np.setdiff1d(np.arange(len(labels)), validation, assume_unique=True)
  return validation, remaining


def subset_record(
  indices: np.ndarray | None,
  labels: np.ndarray,
  *,
  num_classes: int,
  train_size: int,
  subset_seed: int,
) -> dict[str, Any]:
  """What ``train_subset.json`` holds: the recipe, per-class counts and the indices' hash."""
  used = np.arange(len(labels)) if indices is None else np.asarray(indices, np.int64)
  counts = np.bincount(np.asarray(labels)[used], minlength=num_classes)
  return {
    "train_size": int(train_size),
    "subset_seed": int(subset_seed),
    "split_size": int(len(labels)),
    "num_examples": int(len(used)),
    "class_counts": [int(c) for c in counts],
    "method": "balanced-splitmix64-v1",
    "indices_sha256": indices_sha256(used),
  }


def indices_sha256(indices: np.ndarray) -> str:
  """SHA-256 of int64 little-endian ``indices``: which images, provably, in a record."""
  return hashlib.sha256(np.ascontiguousarray(indices, "<i8").tobytes()).hexdigest()


def labels_of(source: Sequence[dict[str, Any]]) -> np.ndarray:
  """Every label of a random-access source (its ``labels`` array when it has one).

  A TFDS data source has no label column, so each record is read: a one-off
  pass that costs about as much as an epoch of decoding, and only when a run
  asks for a subset.
  """
  labels = getattr(source, "labels", None)
  if labels is not None:
    return np.asarray(labels)
  return np.array([int(source[i]["label"]) for i in range(len(source))], np.int64)


class SubsetSource:
  """The records of ``source`` at ``indices``, as a random-access source."""

  def __init__(
    self, source: Sequence[dict[str, Any]], indices: np.ndarray, labels: np.ndarray | None = None
  ):
    self._source, self._indices = source, np.asarray(indices, np.int64)
    self.labels = None if labels is None else np.asarray(labels)[self._indices]

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self._source[int(self._indices[index])]
