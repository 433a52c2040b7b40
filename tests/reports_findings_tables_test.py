"""STUDY.md's robustness table adjusts its p-values by the rule of FINDINGS.md's readings."""

from __future__ import annotations

import numpy as np
import pytest

from hybridconv.reports import study_tables
from hybridconv.studies import compare, records, stats

FACTORS = ["data.train_size", "arm"]
REFERENCE = ("arm", "free")
# Per arm and family, the accuracy gain over the reference for seeds 0-3 (clean is 0.8).
GAINS = {
  "a": {"noise": (0.02, 0.03, 0.025, 0.021), "blur": (0.001, -0.004, 0.003, 0.0)},
  "b": {"noise": (0.001, 0.002, -0.001, 0.0015), "blur": (0.05, 0.052, 0.049, 0.051)},
}


def _run(size: int, arm: str, seed: int) -> records.RunRecord:
  summary = {"clean": 0.8, "noise": 0.6 + seed / 100, "blur": 0.7 + seed / 100}
  for family, gains in GAINS.get(arm, {}).items():
    summary[family] += gains[seed] * (1 + size / 1000)
  return records.RunRecord(
    path=f"/runs/{size}-{arm}-{seed}",
    config={},
    flat={"data.train_size": size, "arm": arm, "seed": seed},
    metrics={"eval/accuracy": (np.array([10]), np.array([0.8 + seed / 100]))},
    summary={"finished": True, "total_steps": 10},
    starts=[],
    robustness={"summary": summary},
  )


def _groups() -> tuple[list[compare.Group], list[records.RunRecord]]:
  runs = [
    _run(size, arm, seed) for size in (100, 1000) for arm in ("free", "a", "b") for seed in range(4)
  ]
  return compare.group_table(runs, FACTORS, REFERENCE), runs


def test_robustness_p_is_adjusted_within_one_size_and_one_family():
  groups, _ = _groups()
  for size in (100, 1000):
    for family in ("noise", "blur"):
      tested = [
        (i, g.robustness_diff[family].p_value)
        for i, g in enumerate(groups)
        if g.levels[0] == size and family in g.robustness_diff
      ]
      assert [g.levels[1] for g in (groups[i] for i, _ in tested)] == ["a", "b"]
      expected = stats.holm([p for _, p in tested])
      adjusted = [groups[i].robustness_p_holm[family] for i, _ in tested]
      assert adjusted == pytest.approx(expected)


def test_the_robustness_table_prints_that_p_and_says_which_rule_and_quantity():
  groups, runs = _groups()
  text = "\n".join(study_tables.results_section(groups, FACTORS, REFERENCE, runs))
  a = next(g for g in groups if g.levels == (1000, "a"))
  assert f", p {a.robustness_p_holm['noise']:.2g}" in text
  assert "over all robustness comparisons" not in text
  assert "compared at one training size for that family" in text
  assert "not net of the clean one" in text


def test_the_final_accuracy_table_shows_small_p_and_tied_seeds():
  runs = [
    records.RunRecord(
      path=f"/runs/{arm}-{seed}",
      config={},
      flat={"data.train_size": 100, "arm": arm, "seed": seed},
      # "a" is ahead by 0.5-0.9 points on seeds 0-3 and tied on seed 4.
      metrics={"eval/accuracy": (np.array([10]), np.array([0.8 + gain]))},
      summary={"finished": True, "total_steps": 10},
      starts=[],
      robustness=None,
    )
    for seed in range(5)
    for arm, gain in (("free", 0.0), ("a", (0.005, 0.007, 0.006, 0.009, 0.0)[seed]))
  ]
  groups = compare.group_table(runs, FACTORS, REFERENCE)
  text = "\n".join(study_tables.results_section(groups, FACTORS, REFERENCE, runs))
  (a,) = [g for g in groups if g.levels == (100, "a")]
  assert "| 4/5 (1 tied) |" in text
  assert f"| {a.diff_p_holm:.2g} |" in text and a.diff_p_holm < 0.1
