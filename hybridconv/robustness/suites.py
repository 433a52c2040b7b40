"""Named evaluation suites: which corruption families, at which levels.

A family is a corruption or attack; its levels are the values of its one
strength parameter, in the units given in :data:`UNITS`. ``clean`` has the
single level 0. The default suite is issue 12's: Gaussian noise, blur and
contrast reduction on the whole test split, FGSM and PGD on a seeded subset.
"""

from __future__ import annotations

import dataclasses
import fractions
from collections.abc import Sequence

CLEAN = "clean"
NOISE, BLUR, CONTRAST = "gaussian_noise", "gaussian_blur", "contrast"
FGSM, PGD = "fgsm", "pgd_linf"
FAMILIES = (CLEAN, NOISE, BLUR, CONTRAST, FGSM, PGD)
ATTACKS = (FGSM, PGD)  # on the seeded attack subset
UNITS = {
  CLEAN: "",
  NOISE: "sigma, [0, 1] pixel units",
  BLUR: "sigma, pixels",
  CONTRAST: "fraction of the original contrast",
  FGSM: "eps, [0, 1] pixel units",
  PGD: "eps, [0, 1] pixel units",
}


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
      if family in ATTACKS:
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
    levels = {f: (tuple(eps) if f in ATTACKS else v) for f, v in self.levels.items()}
    return dataclasses.replace(self, levels=levels)


def check_families(families) -> None:
  unknown = [f for f in families if f not in FAMILIES]
  if unknown:
    raise ValueError(f"unknown corruption {unknown[0]!r}; corruptions: {', '.join(FAMILIES)}")


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
