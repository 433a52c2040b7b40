"""Max pooling whose gradient is cheap on every backend.

Why not ``nnx.max_pool``: it lowers to ``reduce_window`` max, whose gradient
(``select_and_scatter``) is a slow generic loop on XLA:CPU -- 40.7 ms against
1.4 ms here for the forward and backward of a 2x2 pool over a 128x28x28x32
batch, the largest single cost of a SimpleCNN train step on CPU (measured with
``experiments/benchmarks/train_throughput.py``; see docs/training.md). A running
maximum over the window's strided slices is plain elementwise work that XLA
fuses, and its gradient is a strided pad.

Semantics are those of ``nnx.max_pool`` (same outputs, same gradients): at an
exact tie the first position of the window in row-major order takes the whole
gradient, as ``select_and_scatter`` with ``>=`` does, and a NaN anywhere in a
window propagates to its output.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import Array


def _explicit_padding(spatial_shape, window_shape, strides, padding):
  if isinstance(padding, str):
    if padding.upper() not in ("VALID", "SAME"):
      raise ValueError(
        f"max_pool padding={padding!r}: allowed are 'VALID', 'SAME' "
        "or one (low, high) pair per spatial axis"
      )
    return jax.lax.padtype_to_pads(spatial_shape, window_shape, strides, padding.upper())
  pads = tuple(tuple(int(p) for p in pair) for pair in padding)
  if len(pads) != len(window_shape) or any(len(pair) != 2 for pair in pads):
    raise ValueError(
      f"max_pool padding={padding!r}: need one (low, high) pair per "
      f"spatial axis ({len(window_shape)} axes)"
    )
  return pads


def max_pool(
  x: Array,
  window_shape: Sequence[int],
  strides: Sequence[int] | None = None,
  padding: str | Sequence[tuple[int, int]] = "VALID",
) -> Array:
  """Max pooling over the spatial axes of a channels-last ``(batch, *spatial, channels)`` array.

  Drop-in for ``nnx.max_pool(x, window_shape, strides, padding)`` with
  floating-point inputs; padded positions hold -inf and never win.
  """
  window_shape = tuple(int(w) for w in window_shape)
  strides = tuple(int(s) for s in (strides or window_shape))
  spatial = x.shape[1:-1]
  if len(window_shape) != len(spatial) or len(strides) != len(spatial):
    raise ValueError(
      f"max_pool window_shape={window_shape}, strides={strides}: need one "
      f"entry per spatial axis of the input, shape {x.shape}"
    )
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"max_pool needs a floating-point input, got {x.dtype}")
  pads = _explicit_padding(spatial, window_shape, strides, padding)
  if any(lo or hi for lo, hi in pads):
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
  padded = x.shape[1:-1]
  out_shape = [(n - w) // s + 1 for n, w, s in zip(padded, window_shape, strides, strict=True)]
  if min(out_shape) < 1:
    raise ValueError(
      f"max_pool window {window_shape} is larger than the padded input {tuple(padded)}"
    )

  result = None
  for offset in _window_offsets(window_shape):
    start = (0, *offset, 0)
    ends = (o + s * (n - 1) + 1 for o, s, n in zip(offset, strides, out_shape, strict=True))
    limit = (x.shape[0], *ends, x.shape[-1])
    candidate = jax.lax.slice(x, start, limit, (1, *strides, 1))
    if result is None:
      result = candidate
    else:
      # Strictly greater: an earlier position keeps a tie (and its gradient).
      wins = (candidate > result) | jnp.isnan(candidate)
      result = jnp.where(wins, candidate, result)
  return result


def _window_offsets(window_shape):
  """Every offset inside the window in row-major order."""
  offsets = [()]
  for size in window_shape:
    offsets = [o + (i,) for o in offsets for i in range(size)]
  return offsets
