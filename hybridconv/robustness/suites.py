"""The robustness families (one registry) and named evaluation suites of their levels.

A family is a corruption or an attack with one strength parameter; a suite
gives each family its levels. The default suite: Gaussian noise, blur and
contrast reduction on the whole test split, FGSM and PGD on a seeded subset.

Adding a corruption is one function (``images in [0, 1], level, key -> images``,
in :mod:`hybridconv.robustness.corruptions`) and one :func:`register` call
below; evaluation, ``robustness.json``, the reports and the CLI's
``--corruptions`` all read the registry.
"""

from __future__ import annotations

import dataclasses
import fractions
import functools
from collections.abc import Callable, Sequence


@dataclasses.dataclass(frozen=True)
class Family:
  """One corruption or attack.

  Attributes:
    name: the key in suites, ``robustness.json`` and the CLI.
    label: how reports name it.
    unit: the strength parameter and its units.
    attack: True for attacks (run on the seeded attack subset, levels are eps
      in [0, 1]); False for corruptions (the whole test split, levels >= 0).
    make: ``suite -> fn``: for a corruption ``fn(images, level, key)``; for an
      attack ``fn(apply_fn, model, images, labels, eps, key)``.
    milder_up: True where a larger level is a milder corruption (contrast
      kept): plots reverse its axis so severity grows to the right everywhere.
  """

  name: str
  label: str
  unit: str
  attack: bool
  make: Callable[[Suite], Callable]
  milder_up: bool = False


REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
  """Adds ``family`` to the registry (its name must be new)."""
  if family.name in REGISTRY:
    raise ValueError(f"robustness family {family.name!r} is registered twice")
  REGISTRY[family.name] = family
  return family


# The functions are imported when a family is evaluated: the registry itself stays light
# (the CLI's --help and the study's checks read it without importing JAX).


def _identity(suite: Suite):
  return lambda images, level, key: images


def _noise(suite: Suite):
  from hybridconv.robustness import corruptions  # noqa: PLC0415

  return corruptions.gaussian_noise


def _blur(suite: Suite):
  from hybridconv.robustness import corruptions  # noqa: PLC0415

  # One kernel radius for every level of the suite: one compiled program.
  radius = corruptions.blur_radius(max(suite.levels.get(BLUR, (0.0,))))
  return functools.partial(corruptions.gaussian_blur, radius=radius)


def _contrast(suite: Suite):
  from hybridconv.robustness import corruptions  # noqa: PLC0415

  return corruptions.contrast


def _fgsm(suite: Suite):
  from hybridconv.robustness import attacks  # noqa: PLC0415

  return lambda apply_fn, model, x, y, eps, key: attacks.fgsm(apply_fn, model, x, y, eps)


def _pgd(suite: Suite):
  from hybridconv.robustness import attacks  # noqa: PLC0415

  return functools.partial(attacks.pgd_linf, steps=suite.pgd_steps)


CLEAN = register(Family("clean", "clean", "", False, _identity)).name
NOISE = register(
  Family("gaussian_noise", "Gaussian noise", "sigma, [0, 1] pixel units", False, _noise)
).name
BLUR = register(Family("gaussian_blur", "Gaussian blur", "sigma, pixels", False, _blur)).name
CONTRAST = register(
  Family(
    "contrast",
    "contrast reduction",
    "fraction of the original contrast",
    False,
    _contrast,
    milder_up=True,
  )
).name
FGSM = register(Family("fgsm", "FGSM", "eps, [0, 1] pixel units", True, _fgsm)).name
PGD = register(Family("pgd_linf", "PGD L-inf", "eps, [0, 1] pixel units", True, _pgd)).name
FAMILIES = tuple(REGISTRY)
ATTACKS = tuple(name for name, family in REGISTRY.items() if family.attack)
UNITS = {name: family.unit for name, family in REGISTRY.items()}


@dataclasses.dataclass(frozen=True)
class Suite:
  """Levels per family; a family with no levels is skipped.

  Attributes:
    name: the suite's name (recorded in ``robustness.json``).
    levels: ``{family: (level, ...)}`` for families of :data:`FAMILIES`.
    pgd_steps: PGD iterations.
  """

  name: str
  levels: dict[str, tuple[float, ...]]
  pgd_steps: int = 10

  def __post_init__(self):
    check_families(self.levels)
    for family, levels in self.levels.items():
      if REGISTRY[family].attack:
        check_eps(levels)
      elif any(level < 0 for level in levels):
        raise ValueError(f"{family} levels must be >= 0, got {list(levels)}")
    if not isinstance(self.pgd_steps, int) or self.pgd_steps < 1:
      raise ValueError(f"--pgd_steps={self.pgd_steps!r} must be an int >= 1")

  def only(self, families: Sequence[str]) -> Suite:
    """This suite restricted to ``families`` (the clean evaluation is always kept)."""
    check_families(families)
    keep = set(families) | {CLEAN}
    return dataclasses.replace(self, levels={f: v for f, v in self.levels.items() if f in keep})

  def with_eps(self, eps: Sequence[float]) -> Suite:
    """This suite with the attacks' eps replaced by ``eps``."""
    check_eps(eps)
    levels = {f: (tuple(eps) if REGISTRY[f].attack else v) for f, v in self.levels.items()}
    return dataclasses.replace(self, levels=levels)


def label(family: str) -> str:
  """How reports name ``family`` (its name, for a family no longer registered)."""
  return REGISTRY[family].label if family in REGISTRY else family


def is_attack(family: str) -> bool:
  """Whether ``family`` is an attack (levels are eps in [0, 1] pixel units)."""
  return family in REGISTRY and REGISTRY[family].attack


def check_families(families) -> None:
  unknown = [f for f in families if f not in REGISTRY]
  if unknown:
    raise ValueError(f"unknown corruption {unknown[0]!r}; corruptions: {', '.join(REGISTRY)}")


def check_eps(eps: Sequence[float]) -> None:
  bad = [e for e in eps if not 0.0 <= e <= 1.0]
  if bad:
    raise ValueError(
      f"eps={bad[0]!r} is outside [0, 1] (eps is in units of the [0, 1] pixel range, e.g. 8/255)"
    )


def parse_levels(text: str) -> tuple[float, ...]:
  """``'0,1/255,0.1'`` -> floats; fractions such as ``8/255`` are allowed."""
  try:
    return tuple(
      float(fractions.Fraction(part.strip())) for part in text.split(",") if part.strip()
    )
  except (ValueError, ZeroDivisionError) as error:
    raise ValueError(
      f"--eps={text!r} is not a comma-separated list of numbers or fractions such as 2/255"
    ) from error


_EPS = tuple(n / 255 for n in (1, 2, 4, 8))
SUITES = {
  "default": Suite(
    "default",
    {
      CLEAN: (0.0,),
      NOISE: (0.02, 0.05, 0.1, 0.2, 0.3),
      BLUR: (0.5, 1.0, 1.5, 2.0),
      CONTRAST: (0.5, 0.3, 0.1),
      FGSM: _EPS,
      PGD: _EPS,
    },
  ),
}


def get_suite(name: str) -> Suite:
  if name not in SUITES:
    raise ValueError(f"unknown suite {name!r}; suites: {', '.join(SUITES)}")
  return SUITES[name]


def check_config(section) -> None:
  """Refuses bad ``config.robustness`` values (what the study runner hands ``hybridconv
  evaluate`` after a point trains), each with one message naming the key."""
  if not isinstance(section.after_training, bool):
    raise ValueError(
      f"config.robustness.after_training={section.after_training!r} must be True or False"
    )
  try:
    get_suite(section.suite)
  except ValueError as error:
    raise ValueError(f"config.robustness.suite: {error}") from error
  for key in ("pgd_images", "test_images"):
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      raise ValueError(f"config.robustness.{key}={value!r} must be an int >= 0 (0 = all)")
