"""Validation of kernel-bank options.

Bank options arrive from configs and command lines (ints that may be floats,
lists instead of tuples, numpy scalars). Each check turns one value into the
canonical Python type or raises one ``ValueError`` that names the option, the
value given and what is allowed, before any array is built.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from hybridconv.kernels.gabor import kernel_size_2d


def check_int(name: str, value, *, minimum: int, maximum: int | None = None) -> int:
  """An integer in ``[minimum, maximum]`` (booleans refused; ``3.0`` accepted as 3)."""
  ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and float(value).is_integer()
  if ok:
    value = int(value)
    ok = value >= minimum and (maximum is None or value <= maximum)
  if not ok:
    allowed = (
      f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
    )
    raise ValueError(f"option {name} must be {allowed}, got {value!r}")
  return value


def check_float(name: str, value, *, positive: bool = False) -> float:
  """A finite real number, strictly positive when ``positive``."""
  ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
  if ok and positive:
    ok = value > 0
  if not ok:
    allowed = "a finite number > 0" if positive else "a finite number"
    raise ValueError(f"option {name} must be {allowed}, got {value!r}")
  return float(value)


def check_float_tuple(name: str, value, *, positive: bool = False) -> tuple[float, ...]:
  """A non-empty sequence of finite reals (a single number is a 1-tuple)."""
  if isinstance(value, numbers.Real) and not isinstance(value, bool):
    value = (value,)
  elif isinstance(value, np.ndarray) and value.ndim == 1:
    value = value.tolist()
  if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) == 0:
    raise ValueError(
      f"option {name} must be a number or a non-empty sequence of numbers, got {value!r}"
    )
  return tuple(check_float(f"{name}[{i}]", v, positive=positive) for i, v in enumerate(value))


def check_bool(name: str, value) -> bool:
  """A Python or numpy boolean (ints such as 0/1 are refused to catch mix-ups)."""
  if not isinstance(value, bool) and type(value).__name__ != "bool_":
    raise ValueError(f"option {name} must be True or False, got {value!r}")
  return bool(value)


def check_odd_size(what: str, kernel_size, *, minimum: int) -> tuple[int, int]:
  """``(kh, kw)``, both odd and ``>= minimum``, for kernels centred on a pixel.

  Args:
    what: the kernel's name, for the error message.
    kernel_size: ``k`` or ``(kh, kw)``.
    minimum: the smallest size allowed along each axis.
  """
  kh, kw = kernel_size_2d(kernel_size)
  if kh % 2 == 0 or kw % 2 == 0 or kh < minimum or kw < minimum:
    raise ValueError(
      f"{what} is defined for odd kernel sizes >= {minimum} (it must be centred on a pixel), "
      f"got kernel_size={kernel_size!r}"
    )
  return kh, kw
