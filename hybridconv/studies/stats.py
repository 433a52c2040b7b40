"""Statistics of a study: per-group intervals and paired differences against a reference.

With 3-10 seeds per group a Student-t interval is the honest choice (a
bootstrap over three values cannot estimate its own tails); Bouthillier et al.
(MLSys 2021) and rliable (Agarwal et al. 2021) show why every source of
variation must be re-drawn per seed and why the interval matters more than
the mean. Arms share seeds, so the comparison against a reference arm uses the
per-seed differences (a paired t-interval and test), which removes the
subset-to-subset variance both arms share. With many arms against one
reference the Holm step-down adjustment keeps the family-wise error rate.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Summary:
  """n, mean, sample standard deviation and the two-sided t-interval of the mean."""

  n: int
  mean: float
  std: float
  ci_low: float
  ci_high: float


@dataclasses.dataclass(frozen=True)
class PairedDifference:
  """Arm minus reference over the seeds both have."""

  n: int
  mean: float
  std: float
  ci_low: float
  ci_high: float
  wins: int  # seeds where the arm is strictly better
  losses: int
  p_value: float  # two-sided paired t-test (NaN for n < 2 or zero variance)


def tied(n: int, wins: int, losses: int) -> int:
  """Seeds where arm and reference are equal: counted in ``n``, neither a win nor a loss."""
  return n - wins - losses


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
  """Mean with a Student-t confidence interval (NaN bounds for fewer than 2 values)."""
  x = np.asarray([v for v in values if not math.isnan(v)], float)
  n = len(x)
  if n == 0:
    return Summary(0, math.nan, math.nan, math.nan, math.nan)
  mean = float(x.mean())
  if n < 2:
    return Summary(1, mean, math.nan, math.nan, math.nan)
  std = float(x.std(ddof=1))
  half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
  return Summary(n, mean, std, mean - half, mean + half)


def paired_difference(
  arm: Mapping[int, float], reference: Mapping[int, float], confidence: float = CONFIDENCE
) -> PairedDifference:
  """Arm minus reference, paired by seed (seeds missing on either side are left out)."""
  seeds = sorted(
    s for s in set(arm) & set(reference) if not (math.isnan(arm[s]) or math.isnan(reference[s]))
  )
  diffs = np.array([arm[s] - reference[s] for s in seeds], float)
  summary = t_interval(diffs, confidence)
  p_value = math.nan
  if len(diffs) >= 2 and np.ptp(diffs) > 0:
    p_value = float(scipy_stats.ttest_1samp(diffs, 0.0).pvalue)
  elif len(diffs) >= 2 and diffs[0] == 0:
    p_value = 1.0
  return PairedDifference(
    summary.n,
    summary.mean,
    summary.std,
    summary.ci_low,
    summary.ci_high,
    int((diffs > 0).sum()),
    int((diffs < 0).sum()),
    p_value,
  )


def holm(p_values: Sequence[float]) -> list[float]:
  """Holm-adjusted p-values (NaNs stay NaN and do not count as tests).

  Written out because scipy offers only Benjamini-Hochberg
  (``false_discovery_control``), which controls a different error rate.
  """
  indexed = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
  adjusted = [math.nan] * len(p_values)
  running = 0.0
  m = len(indexed)
  for rank, (p, i) in enumerate(indexed):
    running = max(running, min(1.0, (m - rank) * p))
    adjusted[i] = running
  return adjusted
