"""Study grids as data: factors, their product, and a stable name per point.

A point is a dict of config overrides (``{'model.first_layer': 'gabor',
'seed': 1}``). Config files declare a study with ``study()`` yielding points,
usually through :func:`product`; the command line adds factors with
``--grid key=v1,v2``. Nothing here imports JAX or defines flags, so config
files can import it.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any


def product(factors: Mapping[str, Iterable[Any]]) -> Iterator[dict[str, Any]]:
  """Every combination of the factors' values, the last factor varying fastest.

  ``product({'model.first_layer': ['free', 'gabor'], 'seed': range(3)})``
  yields 6 points. Put ``seed`` last so that a partial run of the grid has all
  seeds of the first arms, or first to get every arm once early.
  """
  keys = list(factors)
  values = [list(v) for v in factors.values()]
  for key, choices in zip(keys, values, strict=True):
    if not choices:
      raise ValueError(f"factor {key!r} has no values")
  for combination in itertools.product(*values):
    yield dict(zip(keys, combination, strict=True))


def parse_value(text: str) -> Any:
  """A command-line value: a Python literal when it is one (``3``, ``0.1``, ``True``), else text."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def parse_grid(entries: Sequence[str]) -> dict[str, list[Any]]:
  """``['seed=0,1,2', 'model.first_layer=free,gabor']`` -> ``{key: [values]}`` in order.

  Raises:
    ValueError: an entry without ``=``, without values, or a key given twice.
  """
  grid: dict[str, list[Any]] = {}
  for entry in entries:
    key, sep, values = entry.partition("=")
    key = key.strip().removeprefix("config.")
    if not sep or not key or not values.strip():
      raise ValueError(
        f"--grid {entry!r}: expected key=value1,value2,... "
        "(e.g. --grid model.first_layer=free,gabor)"
      )
    if key in grid:
      raise ValueError(f"--grid names {key!r} twice; give all its values in one --grid")
    grid[key] = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
  return grid


def parse_assignments(entries: Sequence[str], what: str) -> dict[str, Any]:
  """``['a.b=1', 'c=x']`` -> ``{'a.b': 1, 'c': 'x'}`` (a leading ``config.`` is dropped)."""
  found = {}
  for entry in entries:
    key, sep, value = entry.partition("=")
    key = key.strip().lstrip("-").removeprefix("config.")
    if not sep or not key:
      raise ValueError(f"{what} {entry!r}: expected key=value")
    found[key] = parse_value(value)
  return found


def combine(
  points: Sequence[Mapping[str, Any]], grid: Mapping[str, Sequence[Any]]
) -> list[dict[str, Any]]:
  """Each point of a config's ``study()`` crossed with the command-line grid.

  A factor given on the command line replaces the file's factor of the same key: the
  file's points lose that key (repeats then merge) before the crossing, so
  ``--grid seed=0,1`` over a file that varies the seed runs seeds 0 and 1, not both
  lists crossed.
  """
  extra = list(product(grid)) if grid else [{}]
  kept: list[dict[str, Any]] = []
  for point in points or [{}]:
    rest = {k: v for k, v in point.items() if k not in grid}
    if rest not in kept:
      kept.append(rest)
  return [{**point, **more} for point in kept for more in extra]


def factors_of(points: Sequence[Mapping[str, Any]]) -> list[str]:
  """Keys whose value differs between points, in first-seen order."""
  keys: list[str] = []
  for point in points:
    keys += [k for k in point if k not in keys]
  return [k for k in keys if len({_hashable(p.get(k)) for p in points}) > 1]


def _hashable(value: Any) -> str:
  return repr(value)


def primary_factors(points: Sequence[Mapping[str, Any]]) -> list[str]:
  """The varying keys that are not determined by an earlier one.

  A study sets a budget per training size (batch, epochs, cadences): those keys
  vary, but each is a function of ``data.train_size``, so they are not factors
  of their own. A key counts as derived when its value is the same for every
  point that shares the value of some earlier primary factor; put the real
  factors first in each point.
  """
  primary: list[str] = []
  for key in factors_of(points):
    determined = False
    for factor in primary:
      seen: dict[str, str] = {}
      if all(
        seen.setdefault(_hashable(p.get(factor)), _hashable(p.get(key))) == _hashable(p.get(key))
        for p in points
      ):
        determined = True
        break
    if not determined:
      primary.append(key)
  return primary


def _short(key: str, keys: Sequence[str]) -> str:
  """The key's last part, or more of it when another key ends the same way."""
  parts = key.split(".")
  for length in range(1, len(parts) + 1):
    tail = ".".join(parts[-length:])
    if sum(1 for k in keys if k == tail or k.endswith("." + tail)) == 1:
      return tail
  return key


def _text(value: Any) -> str:
  if isinstance(value, Mapping):  # per-layer specs: {'*': 'random'} -> 'all=random'
    return (
      "+".join(f"{'all' if k == '*' else _text(k)}={_text(v)}" for k, v in value.items()) or "none"
    )
  text = value if isinstance(value, str) else repr(value)
  text = re.sub(r"(?<=\d) (?=[a-z%])", "", text)  # durations: '40 epochs' -> '40epochs'
  if text.lstrip().startswith("{"):  # a JSON kernel spec: its source name and a stable hash
    head = re.search(r'"source":\s*"(\w+)"', text)
    found = re.findall(r'"bank":\s*"(\w+)"', text)
    return (
      f"{head.group(1) if head else 'spec'}"
      + (f"-{'+'.join(found)}" if found else "")
      + f"-{hashlib.sha256(text.encode()).hexdigest()[:6]}"
    )
  text = re.sub(r"[^A-Za-z0-9_.+=:-]", "-", text)
  if len(text) > 40:  # dict-valued specs: keep a readable head and a stable hash
    text = text[:24] + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
  return text.replace(":", "-")


def label(value: Any) -> str:
  """A short readable label of a factor value, as in point names (JSON text read back first)."""
  if isinstance(value, str) and value.lstrip().startswith("{"):
    try:
      parsed = json.loads(value)  # compare reads dict-valued keys back as JSON text
    except ValueError:
      return _text(value)
    return _text(value) if isinstance(parsed, Mapping) and "source" in parsed else _text(parsed)
  return _text(value) if isinstance(value, Mapping) else str(value)


def cell(key: str, value: Any) -> str:
  """A factor value in a report's table: as :func:`label`, with the whole training set
  (``data.train_size`` 0) shown as ``all``."""
  if key == "data.train_size" and value in (0, "0"):
    return "all"
  return label(value)


def point_name(point: Mapping[str, Any]) -> str:
  """A directory name from the point's values, stable whatever the grid's order or size.

  ``{'model.first_layer': 'gabor', 'data.train_size': 100, 'seed': 1}`` ->
  ``'first_layer=gabor,train_size=100,seed=1'``; the same point always gets the
  same name, so re-running a grown or reordered study resumes its finished
  and interrupted points instead of repeating them.
  """
  keys = list(point)
  if not keys:
    return "default"
  return ",".join(f"{_short(k, keys)}={_text(v)}" for k, v in point.items())
