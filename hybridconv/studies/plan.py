"""A study as data: its points, their names, and every point's resolved, checked config.

:func:`load_study` executes the config file once. It builds each point's complete
config -- the file's ``get_config``, then the W&B group and tags the runner sets,
the command line's ``--config.a.b=value`` overrides and the point's own values, in
that order, as ``hybridconv train`` would apply them -- and checks every value of
every point before the first one trains, so a bad point k is one ``error:`` line
instead of a failure after k - 1 points trained. What trains a point (a worker, a
SLURM array task) receives that config as a Python literal
(:func:`hybridconv.configlib.to_literal`) and never executes the config file again.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from hybridconv import configlib
from hybridconv.run_layout import PLAN_FILE
from hybridconv.studies import grid as grid_lib
from hybridconv.training import workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class Study:
  """A loaded study: what :func:`load_study` resolved from the config file and command line."""

  spec: str  # the config file and variant, as given to --config
  points: tuple[dict[str, Any], ...]  # each point's own overrides
  overrides: dict[str, Any]  # the command line's overrides, applied to every point
  factors: tuple[str, ...]  # the primary factors: what names a point
  names: tuple[str, ...]  # each point's folder under the study root
  configs: tuple[str, ...]  # each point's resolved config, as configlib.to_literal text

  @property
  def name(self) -> str:
    return study_name(self.spec)

  def config(self, index: int):
    """Point ``index``'s resolved config (locked)."""
    return configlib.from_literal(self.configs[index])

  def settings(self, index: int) -> dict[str, Any]:
    """Every override point ``index`` applies to the config file's ``get_config``, in order."""
    point = self.points[index]
    return point_settings(point, self.overrides, self.name, point_tags(point, self.factors))

  def command(self, root: str, index: int) -> list[str]:
    """The ``python -m hybridconv.main`` command line that trains point ``index`` as the
    runner does (what ``--dry_run`` prints)."""
    workdir = os.path.join(root, self.names[index])
    return point_command(self.spec, workdir, self.settings(index))


def load_study(spec: str, grid: Mapping[str, Sequence[Any]], overrides: Mapping[str, Any]) -> Study:
  """The study of config file ``spec``: its ``study()`` (if any) crossed with ``grid``, each
  point resolved with ``overrides`` and checked.

  Raises:
    ValueError: an unknown key or a bad value (naming the point), a file with neither
      ``study()`` nor a grid, two points with the same name.
  """
  module, variant = configlib.load_config_module(spec)
  points = [dict(p) for p in _study_points(module, variant)] if hasattr(module, "study") else []
  if hasattr(module, "study") and not points:
    raise ValueError(f"--config={spec!r}: study() yielded no points")
  if not points and not grid:
    raise ValueError(
      f"--config={spec!r} defines no study() and no --grid was given; "
      "add --grid key=v1,v2 or a study() to the config file"
    )
  points = grid_lib.combine(points, grid)
  factors = tuple(grid_lib.primary_factors(points))
  names = tuple(point_name(p, factors) for p in points)
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ValueError(
      f"several points are named {repeated[0]!r} (factors {list(factors)}): the study repeats "
      "a combination; give each factor once, on the command line or in the file's study()"
    )
  base = configlib.module_config(module, variant)
  base.lock()
  configlib.apply_overrides(copy.deepcopy(base), dict(overrides))  # a bad override, unprefixed
  study = Study(spec, tuple(points), dict(overrides), factors, names, ())
  configs = []
  for index, name in enumerate(names):  # every point, before the first one trains
    config = copy.deepcopy(base)
    try:
      configlib.apply_overrides(config, study.settings(index))
      check_point(config)
      configs.append(configlib.to_literal(config))
    except ValueError as error:
      raise ValueError(f"point {name}: {error}") from error
  return dataclasses.replace(study, configs=tuple(configs))


def check_point(config) -> None:
  """Every check of a point's config that needs no devices, data or workdir: the trainer's
  (:func:`hybridconv.training.validation.check_values`) and the robustness settings'."""
  from hybridconv.robustness import suites  # noqa: PLC0415
  from hybridconv.training import validation  # noqa: PLC0415 (imports JAX)

  validation.check_values(config)
  suites.check_config(config.robustness)


def _study_points(module, variant: str | None):
  """``module.study()``, or ``module.study(variant)`` when it takes the config's variant."""
  if variant and inspect.signature(module.study).parameters:
    return module.study(variant)
  return module.study()


def study_name(spec: str) -> str:
  """``'kernel_study'`` from ``'experiments/kernel_study/study.py:main'`` (file + variant)."""
  path, _, variant = spec.partition(":")
  base = os.path.splitext(os.path.basename(path))[0]
  if base in ("study", "config"):
    base = os.path.basename(os.path.dirname(os.path.abspath(path))) or base
  return f"{base}-{variant}" if variant else base


def point_name(point: Mapping[str, Any], factors: Sequence[str]) -> str:
  """The point's folder: its primary factor values (all its values when none vary)."""
  return grid_lib.point_name({k: point[k] for k in factors if k in point} or point)


def point_tags(point: Mapping[str, Any], factors: Sequence[str]) -> list[str]:
  return [f"{key}={point[key]}" for key in factors if key in point][:20]  # W&B allows 64 chars


def point_settings(
  point: Mapping[str, Any], overrides: Mapping[str, Any], group: str, tags: Sequence[str]
) -> dict[str, Any]:
  """Every config override of one point, in the order they apply."""
  return {
    "tracking.wandb.group": group,
    "tracking.wandb.tags": tuple(tags),
    **overrides,
    **point,
  }


def flag_value(value: Any) -> str:
  # config_flags takes str fields verbatim and parses other types as Python literals.
  return value if isinstance(value, str) else repr(value)


def point_command(spec: str, workdir: str, settings: Mapping[str, Any]) -> list[str]:
  """The ``python -m hybridconv.main`` command line of a point with these overrides."""
  return [
    sys.executable,
    "-m",
    "hybridconv.main",
    f"--config={spec}",
    f"--workdir={workdir}",
    *(f"--config.{key}={flag_value(value)}" for key, value in settings.items()),
  ]


def shell_line(command: Sequence[str]) -> str:
  """A command as one line that can be pasted into a shell."""
  return " ".join(shlex.quote(part) for part in command)


def write_plan(root: str, study: Study) -> None:
  """``study.json``: what this root is a study of (read by ``hybridconv compare``)."""
  plan = {
    "spec": study.spec,
    "name": study.name,
    "factors": list(study.factors),
    "overrides": dict(study.overrides),
    "points": [dict(p) for p in study.points],
  }
  workdir_lib.write_json(os.path.join(root, PLAN_FILE), plan, indent=2, default=repr)


def read_plan(root: str) -> dict[str, Any] | None:
  return workdir_lib.read_json(os.path.join(root, PLAN_FILE))
