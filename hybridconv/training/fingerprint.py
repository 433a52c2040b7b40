"""Exact checksums of a train state, stored with each checkpoint to detect damaged files.

Orbax detects a truncated or missing array file, but a flipped or overwritten
byte inside one restores silently as different numbers (measured with orbax
0.12.8: a single changed byte in an OCDBT data file restores without error).
So each checkpoint's metadata records one 32-bit checksum per array, computed
on the device from the state being saved, and a restore recomputes and compares
them.

The checksum of an array is ``sum_i (2 i + 1) * bits_i mod 2**32`` over its
elements' bit patterns. Integer addition modulo 2**32 is associative and
commutative, so the value does not depend on the reduction order (any device
count, any backend) -- a float sum would. The odd weights make every change of
a single element, including one flipped bit, change the checksum, and make
swapped elements visible.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hybridconv.training import optim


def _checksum(x: jax.Array) -> jax.Array:
  x = jnp.asarray(x)
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.uint8)
  width = x.dtype.itemsize * 8
  if width == 64:  # two uint32 words per element (only with jax_enable_x64)
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
  else:
    bits = jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{width}")).astype(jnp.uint32)
    bits = bits.reshape(-1)
  weights = jax.lax.iota(jnp.uint32, bits.size) * jnp.uint32(2) + jnp.uint32(1)
  return jnp.sum(bits * weights, dtype=jnp.uint32)


@jax.jit
def _checksums(tree) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return jnp.stack([_checksum(x) for x in leaves]) if leaves else jnp.zeros((0,), jnp.uint32)


def fingerprint(tree) -> dict[str, int]:
  """``{array path: checksum}`` of every array in ``tree`` (one small device computation).

  Works for replicated arrays spanning several processes: every process gets
  the same (replicated) checksums and reads its local copy.
  """
  paths = [optim.path_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
  sums = _checksums(tree)
  local = np.asarray(sums.addressable_data(0)) if hasattr(sums, "addressable_data") else sums
  return dict(zip(paths, (int(v) for v in np.asarray(local)), strict=True))


def first_mismatch(expected: dict[str, int], actual: dict[str, int]) -> str | None:
  """None if the fingerprints agree, else a phrase naming the first array that differs."""
  if expected.keys() != actual.keys():
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    return f"the arrays differ from those saved (missing {missing[:3]}, unexpected {extra[:3]})"
  bad = [path for path in expected if expected[path] != actual[path]]
  if not bad:
    return None
  return (f"{len(bad)} of {len(expected)} arrays do not match the checksums saved with it "
          f"(first: {bad[0]})")
