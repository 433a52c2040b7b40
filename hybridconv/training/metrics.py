"""Losses and accuracy counts for training and evaluation.

Evaluation accumulates *sums* (of losses and correct predictions, over real
examples only) on device and divides once at the end, so padded final batches
and uneven batch counts give exact dataset means.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax import Array

TOP5_MIN_CLASSES = 6  # top-5 accuracy is only informative with more than 5 classes


def cross_entropy(logits: Array, labels: Array, *, label_smoothing: float = 0.0) -> Array:
  """Per-example softmax cross-entropy with integer labels, optionally smoothed.

  Computed in float32 whatever the compute dtype, because the log-softmax of
  bf16 logits loses the small probabilities that the gradient needs.
  """
  logits = logits.astype(jnp.float32)
  targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
  if label_smoothing > 0:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def top_k_correct(logits: Array, labels: Array, k: int) -> Array:
  """Bool ``(B,)``: the label is among the ``k`` highest logits.

  Counts the logits strictly greater than the label's logit, so ties are
  resolved in favour of the label (as ``argmax`` does for the first index).
  """
  label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
  return jnp.sum(logits > label_logit, axis=-1) < k


def eval_sums(logits: Array, labels: Array, mask: Array) -> dict[str, Array]:
  """Sums over the real (``mask``) examples of one evaluation batch."""
  mask = mask.astype(jnp.float32)
  sums = {
    "loss": jnp.sum(cross_entropy(logits, labels) * mask),
    "correct": jnp.sum(top_k_correct(logits, labels, 1) * mask),
    "count": jnp.sum(mask),
  }
  if logits.shape[-1] >= TOP5_MIN_CLASSES:
    sums["correct_top5"] = jnp.sum(top_k_correct(logits, labels, 5) * mask)
  return sums


def summarize_eval(sums: dict[str, float], prefix: str = "eval") -> dict[str, float]:
  """Dataset means from accumulated sums: loss, accuracy and (if counted) top-5."""
  count = float(sums["count"])
  if count <= 0:
    raise ValueError("evaluation saw no examples; is the test split empty?")
  out = {
    f"{prefix}/loss": float(sums["loss"]) / count,
    f"{prefix}/accuracy": float(sums["correct"]) / count,
  }
  if "correct_top5" in sums:
    out[f"{prefix}/top5_accuracy"] = float(sums["correct_top5"]) / count
  return out


class MeanAccumulator:
  """Host-side running means of scalar train metrics between two log events."""

  def __init__(self):
    self._sums: dict[str, float] = {}
    self._count = 0

  def add(self, scalars: dict[str, float]) -> None:
    for key, value in scalars.items():
      self._sums[key] = self._sums.get(key, 0.0) + float(value)
    self._count += 1

  def __len__(self) -> int:
    return self._count

  def pop(self) -> dict[str, float]:
    """Returns the means and resets."""
    means = {key: value / self._count for key, value in self._sums.items()} if self._count else {}
    self._sums, self._count = {}, 0
    return means
