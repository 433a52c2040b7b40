"""Per-layer kernel sources for the model zoo.

Every model names its conv layers (``conv1`` first, in forward order, e.g.
``stage2_block1_shortcut`` for a ResNet) and asks :func:`resolve_sources`
which source each one uses. The rules, in order of precedence:

1. an entry for the layer's own name in ``kernels``;
2. the longest glob pattern in ``kernels`` that matches the name (``'*'``
   matches every conv layer, ``'stage1_*'`` a ResNet stage, ``'*_shortcut'``
   the projection shortcuts);
3. ``first_layer`` for the first conv layer;
4. otherwise a free (learned) kernel.

So "first layer Gabor, the rest free" is ``first_layer='gabor'``; "every layer
hybrid" is ``kernels={'*': 'hybrid'}``; "every layer hybrid except the 1x1
shortcuts" is ``kernels={'*': 'hybrid', '*_shortcut': 'free'}`` -- one config
line each. (A zero-mean Gabor of size 1x1 is identically zero, so a Gabor
group on a 1x1 shortcut carries no signal; the second form avoids that.)

Random kernels follow the run's seed. A ``random`` source without a seed of
its own (``'random'``, not ``'random:3'``), and a fixed ``random`` bank without
a ``seed`` option, get the seed :func:`derived_seed` of the run's seed and the
layer's name (and the group's position inside a hybrid layer), so every seed of
a study draws new random kernels, every layer draws different ones, and
``'random:<n>'`` still pins one draw for all seeds.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from hybridconv.nn import sources, spec_keys


def derived_seed(seed: int, name: str) -> int:
  """A seed in ``[0, 2**31)`` from the run's ``seed`` and a layer (or group) ``name``.

  SHA-256 of ``'<seed>/<name>'``: stable across machines and versions, and
  unrelated for neighbouring seeds or similar names.
  """
  digest = hashlib.sha256(f"{int(seed)}/{name}".encode()).digest()
  return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def seed_random_source(source: sources.KernelSource, seed: int, name: str) -> sources.KernelSource:
  """``source`` with every random draw that names no seed seeded from ``(seed, name)``."""
  if isinstance(source, sources.Random) and source.seed is None:
    return sources.Random(seed=derived_seed(seed, name))
  if isinstance(source, sources.Fixed) and source.bank == "random":
    options = dict(source.options)
    if "seed" not in options:
      return dataclasses.replace(source, options={**options, "seed": derived_seed(seed, name)})
  if isinstance(source, sources.BankMix):
    return dataclasses.replace(source, bank=seed_random_source(source.bank, seed, name))
  if isinstance(source, sources.Hybrid):
    groups = tuple(
      (seed_random_source(group, seed, f"{name}/group{index}"), size)
      for index, (group, size) in enumerate(source.groups)
    )
    return sources.Hybrid(groups=groups)
  return source


def resolve_sources(
  layer_names: Sequence[str],
  *,
  first_layer: Any = "free",
  kernels: Mapping[str, Any] | None = None,
  seed: int | None = None,
) -> dict[str, sources.KernelSource]:
  """Kernel source of each conv layer of a model.

  Args:
    layer_names: the model's conv layer names in forward order.
    first_layer: source spec of the first conv layer.
    kernels: per-layer overrides, keyed by layer name or glob pattern ('*').
    seed: the run's seed: random sources without their own seed draw from it
      and the layer name (module docstring). None leaves them at seed 0.

  Raises:
    ValueError: for a key in ``kernels`` that names or matches no conv layer of
      the model, two equally long patterns matching one layer, or an invalid
      source spec.
  """
  kernels = dict(kernels or {})
  unknown = spec_keys.unmatched_keys(kernels, layer_names)
  if unknown:
    raise ValueError(
      f"model.kernels names unknown conv layer(s) {unknown}; this model's conv "
      f"layers are {list(layer_names)} (or a glob pattern such as '*')"
    )
  resolved = {}
  for index, name in enumerate(layer_names):
    key = spec_keys.match_key(name, kernels, what="model.kernels")
    spec, where = kernels.get(key), f"model.kernels[{key!r}]"
    if key is None:
      spec = first_layer if index == 0 else "free"
      where = "model.first_layer"
    try:
      resolved[name] = sources.parse(spec)
    except ValueError as error:  # name the config key that holds the bad spec
      raise ValueError(f"{where}={spec!r}: {error}") from error
    if seed is not None:
      resolved[name] = seed_random_source(resolved[name], seed, name)
  return resolved
