"""Which entry of a per-layer spec applies to a layer: the one precedence rule.

``model.kernels`` (the model zoo) and ``hybridconv.nn.convert`` (any NNX model)
both take ``{layer name or glob: kernel source}``; a layer takes its own entry,
else the longest matching glob, and two equally long matching globs are an error.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

_GLOB_CHARACTERS = frozenset("*?[")


def is_pattern(key: str) -> bool:
  """Whether ``key`` is a glob (``*``, ``?``, ``[``) rather than a layer name."""
  return bool(_GLOB_CHARACTERS & set(key))


def matches(key: str, name: str) -> bool:
  """Whether spec key ``key`` applies to layer ``name`` (its name, or a glob matching it)."""
  return key == name or (is_pattern(key) and fnmatch.fnmatchcase(name, key))


def match_key(name: str, spec: Mapping[str, Any], *, what: str) -> str | None:
  """The key of ``spec`` for layer ``name``: exact, else the longest matching glob, else None.

  Raises:
    ValueError: two equally long globs match ``name`` (``what`` names the spec).
  """
  if name in spec:
    return name
  keys = [k for k in spec if is_pattern(k) and fnmatch.fnmatchcase(name, k)]
  if not keys:
    return None
  longest = [k for k in keys if len(k) == max(map(len, keys))]
  if len(longest) > 1:
    raise ValueError(
      f"{what} patterns {longest} both match conv layer {name!r} and are equally "
      "long; give that layer its own entry or make one pattern longer"
    )
  return longest[0]


def unmatched_keys(spec: Iterable[str], names: Iterable[str]) -> list[str]:
  """The keys of ``spec`` that apply to none of the layers ``names``, sorted."""
  names = list(names)
  return sorted(key for key in spec if not any(matches(key, name) for name in names))
