"""Paired readings (the end, part of the budget, robustness beyond clean) and FINDINGS.md rules."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hybridconv.reports import findings
from hybridconv.studies import readings, records, stats

FACTORS = ["data.train_size", "arm"]
REFERENCE = ("arm", "free")


def _run(
  tmp_path, size, arm, seed, final, val=(), robustness=None, prints=None
) -> records.RunRecord:
  path = tmp_path / f"{size}-{arm}-{seed}"
  path.mkdir()
  if prints is not None:
    (path / "initial_values.json").write_text(json.dumps({"layers": prints}))
  steps = np.arange(1, len(val) + 1) * 10
  metrics = {"eval/accuracy": (np.array([80]), np.array([final]))}
  if len(val):
    metrics["val/accuracy"] = (steps, np.asarray(val, float))
  flat = {"data.train_size": size, "arm": arm, "seed": seed, "batch_size": 4}
  return records.RunRecord(
    path=str(path),
    config={},
    flat=flat,
    metrics=metrics,
    summary={"finished": True, "total_steps": 80},
    starts=[],
    robustness={"summary": robustness} if robustness else None,
  )


def test_the_end_reading_is_the_paired_difference_with_holm_within_each_size(tmp_path):
  runs = []
  gains = {"a": [0.02, 0.03, 0.025, 0.02], "b": [0.001, -0.002, 0.0, 0.002]}
  for size in (100, 1000):
    for seed in range(4):
      runs.append(_run(tmp_path, size, "free", seed, 0.80 + seed / 100))
      for arm, gain in gains.items():
        runs.append(_run(tmp_path, size, arm, seed, 0.80 + seed / 100 + gain[seed]))
  rows = readings.paired_rows(runs, FACTORS, REFERENCE)
  assert {row["reading"] for row in rows} == {readings.END_READING}
  assert len(rows) == 4
  a = next(r for r in rows if r["arm"] == "a" and r["data.train_size"] == 100)
  expected = stats.paired_difference(
    dict(enumerate(np.add(0.8, gains["a"]))), dict.fromkeys(range(4), 0.8)
  )
  assert a["mean"] == pytest.approx(expected.mean)
  assert a["wins"] == 4 and a["n"] == 4 and a["family_size"] == 2
  b = next(r for r in rows if r["arm"] == "b" and r["data.train_size"] == 100)
  assert a["p_holm"] == pytest.approx(min(1.0, 2 * min(a["p"], b["p"])))


def test_budget_readings_take_validation_at_fractions_of_training(tmp_path):
  curve_free = [0.5, 0.6, 0.65, 0.7, 0.72, 0.74, 0.75, 0.76]
  curve_fast = [0.6, 0.66, 0.68, 0.71, 0.72, 0.74, 0.75, 0.76]
  runs = [
    _run(tmp_path, 100, arm, seed, 0.8, val=[v + seed / 1000 for v in curve])
    for seed in range(3)
    for arm, curve in (("free", curve_free), ("fast", curve_fast))
  ]
  rows = {row["reading"]: row for row in readings.paired_rows(runs, FACTORS, REFERENCE)}
  early = rows["validation, after 0.125 of the budget"]
  assert early["mean"] == pytest.approx(0.1) and early["images_seen"] == 10 * 4
  assert rows["validation, after 1 of the budget"]["mean"] == pytest.approx(0.0, abs=1e-9)
  assert rows["validation, after 0.5 of the budget"]["images_seen"] == 40 * 4


def test_robustness_is_read_beyond_the_clean_difference(tmp_path):
  runs = []
  for seed in range(3):
    runs.append(_run(tmp_path, 1000, "free", seed, 0.8, robustness={"clean": 0.8, "noise": 0.6}))
    # 2 points better clean, 5 better under noise: 3 points beyond clean
    runs.append(
      _run(
        tmp_path, 1000, "arm", seed, 0.82, robustness={"clean": 0.82, "noise": 0.65 + seed / 1e4}
      )
    )
  rows = {row["reading"]: row for row in readings.paired_rows(runs, FACTORS, REFERENCE)}
  assert rows["robustness beyond clean: noise"]["mean"] == pytest.approx(0.03, abs=2e-4)
  assert "robustness beyond clean: clean" not in rows


def _row(mean, low, high, p_holm, n=8, wins=6, reading=readings.END_READING, losses=None):
  return {
    "reading": reading,
    "mean": mean,
    "ci_low": low,
    "ci_high": high,
    "p_holm": p_holm,
    "family_size": 10,
    "n": n,
    "wins": wins,
    "losses": n - wins if losses is None else losses,
    "images_seen": 1250,
  }


@pytest.mark.parametrize(
  ("row", "expected"),
  [
    (
      _row(0.0062, 0.0041, 0.0083, 0.002),
      "`g` leads `free` in final test accuracy by 0.62 points (95% CI 0.41 to 0.83) at 10,000 "
      "training images, 6 of 8 seeds ahead, Holm-adjusted p = 0.002.",
    ),
    (
      _row(-0.0005, -0.0021, 0.0011, 0.9, wins=3),
      "No difference detected between `g` and `free` in final test accuracy at 10,000 training "
      "images (-0.05 points, 95% CI -0.21 to 0.11, 3 of 8 seeds ahead).",
    ),
    (
      _row(-0.004, -0.007, -0.001, 0.2, wins=1),
      "`g` trails `free` in final test accuracy by 0.40 points (95% CI -0.70 to -0.10) at "
      "10,000 training images, 1 of 8 seeds ahead; the interval excludes 0 but the difference "
      "does not survive Holm's adjustment over the 10 comparisons at this size (p = 0.2).",
    ),
  ],
)
def test_sentences_follow_the_fixed_rules(row, expected):
  assert findings.sentence(row, "`g`", "`free`", "at 10,000 training images") == expected


def test_a_budget_reading_names_the_images_seen_and_its_part_of_the_budget():
  row = _row(0.01, 0.005, 0.015, 0.01, reading="validation, after 0.125 of the budget")
  text = findings.sentence(row, "`g`", "`free`", "at 100 training images")
  assert "in validation accuracy after 1,250 images seen (1/8 of the budget)" in text
  row = _row(0.01, 0.005, 0.015, 0.01, reading="validation, after 1 of the budget")
  text = findings.sentence(row, "`g`", "`free`", "at 100 training images")
  assert "in validation accuracy at the end of the budget (1,250 images seen)" in text


@pytest.mark.parametrize(
  ("row", "seeds"),
  [
    (_row(0.0062, 0.0041, 0.0083, 0.002, wins=5, losses=1), "5 of 8 seeds ahead, 2 tied,"),
    (_row(-0.0005, -0.0021, 0.0011, 0.9, wins=3, losses=4), "3 of 8 seeds ahead, 1 tied)."),
    (_row(-0.0005, -0.0021, 0.0011, 0.9, wins=3, losses=5), "3 of 8 seeds ahead)."),
  ],
)
def test_tied_seeds_are_stated_beside_the_seeds_ahead(row, seeds):
  assert seeds in findings.sentence(row, "`g`", "`free`", "at 100 training images")


def test_identical_accuracies_count_as_tied_in_the_findings(tmp_path):
  runs = []
  for seed, gain in enumerate((0.01, 0.0, 0.02, -0.01)):
    runs.append(_run(tmp_path, 100, "free", seed, 0.8 + seed / 100))
    runs.append(_run(tmp_path, 100, "a", seed, 0.8 + seed / 100 + gain))
  (row,) = readings.paired_rows(runs, FACTORS, REFERENCE)
  assert "2 of 4 seeds ahead, 1 tied" in findings.sentence(row, "`a`", "`free`", "at 100")


def test_paired_seeds_state_the_range_when_n_differs_between_arms():
  assert findings.paired_seeds([{"n": 10}, {"n": 10}]) == "10 paired seeds"
  assert findings.paired_seeds([{"n": 10}, {"n": 9}, {"n": 10}]) == "9-10 paired seeds"
  assert findings.paired_seeds([{"n": 1}]) == "1 paired seed"


def _study(tmp_path, seeds) -> list[records.RunRecord]:
  """Arms ``a`` and ``b`` against ``free`` at 100 images, ``b`` on ``seeds`` only."""
  curves = {
    "free": [0.5, 0.6, 0.65, 0.7, 0.72, 0.74, 0.75, 0.76],
    "a": [0.6, 0.66, 0.68, 0.71, 0.72, 0.74, 0.75, 0.76],
    "b": [0.4, 0.5, 0.55, 0.65, 0.73, 0.75, 0.76, 0.78],
  }
  spread = {"free": 0.0, "a": 0.002, "b": 0.004}  # per-seed differences that vary a little
  return [
    _run(tmp_path, 100, arm, seed, 0.8 + seed / 100, val=[v + seed * spread[arm] for v in curve])
    for seed in range(4)
    for arm, curve in curves.items()
    if arm != "b" or seed in seeds
  ]


def test_the_headline_states_the_range_of_paired_seeds(tmp_path):
  rows = readings.paired_rows(_study(tmp_path, seeds=(0, 1, 2)), FACTORS, REFERENCE)
  lines = findings.headline(rows, [], FACTORS, REFERENCE)
  assert any(line.startswith("**100 training images** (3-4 paired seeds") for line in lines)
  (tmp_path / "all").mkdir()
  rows = readings.paired_rows(_study(tmp_path / "all", seeds=range(4)), FACTORS, REFERENCE)
  lines = findings.headline(rows, [], FACTORS, REFERENCE)
  assert any(line.startswith("**100 training images** (4 paired seeds") for line in lines)


def test_learning_speed_follows_each_arm_through_every_part_of_the_budget(tmp_path):
  rows = readings.paired_rows(_study(tmp_path, seeds=(0, 1, 2)), FACTORS, REFERENCE)
  lines = findings.learning_speed(rows, FACTORS, REFERENCE)
  assert "**100 training images** (3-4 paired seeds):" in lines
  parts = ["(1/8 of the budget)", "(1/4 of the budget)", "(1/2 of the budget)", "end of the budget"]
  for arm in ("a", "b"):
    start = lines.index(f"- `{arm}`:")
    block = lines[start + 1 : start + 1 + len(parts)]
    assert all(line.startswith("  - ") and f"`{arm}`" in line for line in block)
    assert all(part in line for part, line in zip(parts, block, strict=True))
  b = lines[lines.index("- `b`:") + 1 :]
  # b starts 10 points behind and ends 2 ahead: each reading is stated, not only the first
  assert "`b` trails `free`" in b[0] and "(1/8 of the budget)" in b[0]
  assert "`b` leads `free`" in b[3] and "at the end of the budget" in b[3]


def test_pairing_check_reads_the_fingerprints(tmp_path):
  same = {"conv2": "x", "fc1": "y"}
  runs = [
    _run(tmp_path, 100, "free", 0, 0.8, prints={"conv1": "a", **same}),
    _run(tmp_path, 100, "fixed", 0, 0.8, prints={"conv1": "b", **same}),
    _run(tmp_path, 100, "free", 1, 0.8, prints={"conv1": "c", **same}),
    _run(tmp_path, 100, "fixed", 1, 0.8, prints={"conv1": "d", "conv2": "z", "fc1": "y"}),
  ]
  assert findings.pairing_check(runs, FACTORS, "arm") == (1, 2, {"conv1", "conv2"})


def test_the_findings_block_is_replaced_and_nothing_else():
  block = f"{findings.BEGIN}\nnew\n{findings.END}"
  document = f"intro\n{findings.BEGIN}\nold\n{findings.END}\nrest\n"
  assert findings.replace_block(document, f"# F\n{block}\nmore") == f"intro\n{block}\nrest\n"
  with pytest.raises(ValueError, match="no findings block"):
    findings.replace_block("no markers", block)


def test_a_single_seed_gets_no_interval(tmp_path):
  row = _row(0.01, math.nan, math.nan, math.nan, n=1, wins=1)
  assert "too few for an interval" in findings.sentence(row, "`g`", "`free`", "at 100")


def test_the_status_counts_finished_runs_against_the_plan(tmp_path):
  runs = [_run(tmp_path, 100, "free", seed, 0.8) for seed in range(3)]
  plan = {"points": [{"data.train_size": size} for size in (100,) * 4 + (1000,) * 2]}
  assert findings.status(runs, plan) == (
    "3 of the 6 planned runs have finished (3 of 4 at 100 training images, 0 of 2 at 1,000 "
    "training images); comparisons below cover the finished ones."
  )
  assert findings.status(runs, None) == "3 finished runs."


def test_the_whole_training_set_reads_as_all_in_report_tables():
  from hybridconv.studies import grid  # noqa: PLC0415

  assert grid.cell("data.train_size", 0) == "all"
  assert grid.cell("data.train_size", 1000) == "1000"
  assert grid.cell("seed", 0) == "0"
