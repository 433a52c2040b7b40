"""Loading config files by path, applying dotted-key overrides with clear errors, and a
complete config as a Python literal.

Shared by the entry point (to explain a bad ``--config.a.b=value``) and the
study runner (to apply a ``study()`` point, and to hand each point's resolved
config to the process that trains it).
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from hybridconv.training import durations

OVERRIDE_PREFIX = "--config."


def load_config_module(spec: str):
  """``(module, variant)`` of ``'path/to/config.py:variant'`` (variant None if absent)."""
  path, _, variant = spec.partition(":")
  if not os.path.isfile(path):
    raise ValueError(f"--config={spec!r}: no config file {path!r}")
  if os.getcwd() not in sys.path:  # configs import their defaults as `configs.default`
    sys.path.insert(0, os.getcwd())
  module_spec = importlib.util.spec_from_file_location("hybridconv_loaded_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module, variant or None


def module_config(module, variant: str | None):
  """A loaded config file's ``get_config``, with the variant when there is one (unlocked)."""
  return module.get_config(variant) if variant else module.get_config()


def load_config(spec: str):
  """The config of ``'path:variant'``, as ``config_flags`` would build it (unlocked)."""
  return module_config(*load_config_module(spec))


def to_literal(config) -> str:
  """A complete config as the text of a Python literal (its nested dict's ``repr``).

  What the study runner hands the process that trains a point, instead of the
  config file to execute again. A literal, not JSON, so tuples stay tuples:
  :func:`from_literal` rebuilds a config that equals ``config`` key for key.

  Raises:
    ValueError: a value that does not survive the round trip (not a Python
      literal: an object, a non-finite float).
  """
  data = config.to_dict()
  text = repr(data)
  try:
    same = ast.literal_eval(text) == data
  except (ValueError, SyntaxError):
    same = False
  if not same:
    raise ValueError(
      "the config holds a value that is not a Python literal (str, number, bool, None, "
      "tuple, list or dict of those); config files may only set such values"
    )
  return text


def from_literal(text: str):
  """The locked config whose :func:`to_literal` text is ``text``."""
  config = ml_collections.ConfigDict(ast.literal_eval(text))
  config.lock()
  return config


# The one declaration of every config key, beside the package in a source checkout.
DEFAULT_CONFIG = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "default.py"
)


def with_defaults(saved: Mapping[str, Any]) -> dict[str, Any]:
  """A run's saved config (``config.json``) with the keys it lacks filled from the defaults.

  Keys added to hybridconv after a run was trained are missing from its
  ``config.json``; by convention their defaults (``configs/default.py``, when it
  is beside the package) reproduce the behaviour from before the key existed.
  The run's own values always win; without the defaults file ``saved`` is returned.
  """
  saved = upgrade(saved)
  if not os.path.isfile(DEFAULT_CONFIG):
    return saved
  return _merged(copy.deepcopy(_defaults()), saved)


# Keys that held a duration as a number with its unit in the name, and the key that holds
# it now (a string with its unit: training/durations.py). Old runs' config.json still
# spell them the old way; `upgrade` rewrites them so old and new runs compare equal.
_RENAMED_DURATIONS = (
  ("log_every_steps", "log_every", "steps"),
  ("eval_every_epochs", "eval_every", "epochs"),
  ("checkpoint.every_epochs", "checkpoint.every", "epochs"),
  ("optim.warmup_epochs", "optim.warmup", "epochs"),
  ("tracking.scalars_every_steps", "tracking.scalars_every", "steps"),
  ("tracking.filters_every_steps", "tracking.filters_every", "steps"),
)


def upgrade(saved: Mapping[str, Any]) -> dict[str, Any]:
  """A saved config (``config.json``) with keys renamed since it was written spelt as now.

  Durations once were numbers with the unit in the key (``num_epochs``,
  ``eval_every_epochs``, ...); the same values become duration strings, spelt
  by :func:`durations.spell` so they equal what a current config computes.
  """
  config = copy.deepcopy(dict(saved))

  def pop(dotted: str):
    *parents, leaf = dotted.split(".")
    node = config
    for parent in parents:
      node = node.get(parent)
      if not isinstance(node, dict):
        return None
    return node.pop(leaf, None)

  def put(dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for parent in parents:
      node = node.setdefault(parent, {})
    node.setdefault(leaf, value)

  epochs, steps = pop("num_epochs"), pop("num_train_steps")
  if steps is not None and steps > 0:
    put("train_for", durations.spell(steps, "steps"))
  elif epochs is not None:
    put("train_for", durations.spell(epochs, "epochs"))
  for old, new, unit in _RENAMED_DURATIONS:
    value = pop(old)
    if value is not None:
      never = unit == "steps" and value <= 0 and new.startswith("tracking.")
      put(new, "never" if never else durations.spell(value, unit))
  drops = pop("optim.step_epochs")
  if drops is not None:
    put("optim.step_at", [durations.spell(e, "epochs") for e in drops])
  return config


@functools.cache
def _defaults() -> dict[str, Any]:
  return load_config(DEFAULT_CONFIG).to_dict()


def _merged(defaults: Mapping[str, Any], saved: Mapping[str, Any]) -> dict[str, Any]:
  merged = dict(defaults)
  for key, value in saved.items():
    if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) and value:
      merged[key] = _merged(merged[key], value)
    else:
      merged[key] = value
  return merged


def missing_key(config, dotted: str) -> str | None:
  """None if ``dotted`` names a key of ``config``, else a message saying what exists."""
  node, path = config, "config"
  for part in dotted.split("."):
    keys = list(node.keys()) if hasattr(node, "keys") else []
    if part not in keys:
      allowed = ", ".join(sorted(keys)) if keys else f"none ({path} is a value, not a section)"
      return f"{path} has no key {part!r}; its keys: {allowed}"
    node, path = node[part], f"{path}.{part}"
  return None


def apply_overrides(config, overrides: Mapping[str, Any]):
  """Sets dotted keys on a (locked) config; an unknown key raises one ValueError naming it."""
  for dotted, value in overrides.items():
    problem = missing_key(config, dotted)
    if problem:
      raise ValueError(f"override {dotted!r}: {problem}")
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
      node = node[part]
    try:
      node[leaf] = value
    except TypeError as error:  # ml_collections refuses a value of another type
      current = node[leaf]
      raise ValueError(
        f"override {dotted}={value!r}: {_kind(value)} where the key holds {_kind(current)} "
        f"(default {current!r})"
      ) from error
  return config


def _kind(value: Any) -> str:
  name = type(value).__name__
  return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _config_specs(argv: Sequence[str]) -> list[str]:
  return [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]


def explain_bad_value(argv: Sequence[str]) -> str | None:
  """One line for a ``--config`` that cannot be built or a ``--config.a.b=v`` of the wrong type.

  Returns:
    ``--config=SPEC: <the config file's own message>`` when its ``get_config``
    raises (e.g. an unknown variant), ``--config.a.b='v': ...`` naming the
    expected type when a value does not parse as the key's type, else None.
  """
  specs = _config_specs(argv)
  if not specs:
    return None
  try:
    config = load_config(specs[-1])
  except Exception as error:  # noqa: BLE001 (any error of the user's config file is reported)
    message = str(error)
    return message if message.startswith("--config=") else f"--config={specs[-1]}: {message}"
  for arg in argv:
    if not arg.startswith(OVERRIDE_PREFIX) or "=" not in arg:
      continue
    dotted, value = arg[len(OVERRIDE_PREFIX) :].split("=", 1)
    if missing_key(config, dotted):
      continue
    current = config
    for part in dotted.split("."):
      current = current[part]
    kind = type(current)
    if kind in (int, float, bool) and not _parses_as(kind, value):
      article = "an" if kind is int else "a"
      return (
        f"{OVERRIDE_PREFIX}{dotted}={value!r} is not {article} {kind.__name__}; allowed: "
        f"{article} {kind.__name__} like the default {current!r}"
      )
  return None


def _parses_as(kind: type, text: str) -> bool:
  """Whether ``text`` is a literal ``config_flags`` accepts for a key of type ``kind``."""
  if kind is bool:
    return text.lower() in ("true", "false", "1", "0")
  try:
    kind(text) if kind is float else int(text, 0)
  except ValueError:
    return kind is int and _is_integral_float(text)
  return True


def _is_integral_float(text: str) -> bool:
  try:
    return float(text).is_integer()
  except ValueError:
    return False


def explain_bad_override(argv: Sequence[str]) -> str | None:
  """The first ``--config.a.b=v`` in ``argv`` whose key the ``--config`` file lacks, explained."""
  specs = _config_specs(argv)
  if not specs:
    return None
  try:
    config = load_config(specs[-1])
  except Exception:  # noqa: BLE001 (the config itself is broken; let the caller report that)
    return None
  for arg in argv:
    if arg.startswith(OVERRIDE_PREFIX):
      dotted = arg[len(OVERRIDE_PREFIX) :].split("=", 1)[0]
      problem = missing_key(config, dotted)
      if problem:
        return f"{arg}: {problem}"
  return None
