"""Random streams per layer: a layer's initial values depend only on the seed and its path.

A shared ``nnx.Rngs`` hands out keys in construction order, so a layer's initial
values depend on how many keys the layers built before it drew. Swapping the
first layer of a model from fixed (no draw) to free (one draw) then re-seeds
every later layer, and two arms of a study that share a seed are no longer
paired on the layers they do not swap. :func:`layer_rngs` derives a layer's
streams from the base keys of the model's streams and the layer's path alone
(never from their counters), so the order and number of other layers' draws
cannot reach it.
"""

from __future__ import annotations

import zlib

import jax
from flax import nnx


def path_id(path: str) -> int:
  """A fixed 32-bit number for a layer path (CRC-32: the same on every machine and run)."""
  return zlib.crc32(path.encode("utf-8"))


def layer_rngs(rngs: nnx.Rngs, path: str) -> nnx.Rngs:
  """Fresh streams for the layer at ``path`` (e.g. ``'conv2'``, ``'layer1_0'``).

  Each stream of ``rngs`` contributes its base key folded with :func:`path_id`;
  the stream's counter is neither read nor advanced. Nested paths compose:
  ``layer_rngs(layer_rngs(r, 'block'), 'conv1')`` depends only on both names.
  """
  keys = {name: jax.random.fold_in(stream.key[...], path_id(path)) for name, stream in rngs.items()}
  return nnx.Rngs(**keys)
