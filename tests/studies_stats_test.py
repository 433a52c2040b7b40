"""Study statistics and grids against hand-computed values (hybridconv.studies.stats, .grid)."""

from __future__ import annotations

import math

import pytest

from hybridconv.studies import grid, stats


def test_t_interval_matches_the_hand_computed_interval():
  # mean 0.82, sd 0.02, t(0.975, 2) = 4.302653, half width 4.302653 * 0.02 / sqrt(3)
  summary = stats.t_interval([0.80, 0.82, 0.84])
  assert summary.n == 3 and summary.mean == pytest.approx(0.82)
  assert summary.std == pytest.approx(0.02)
  assert summary.ci_low == pytest.approx(0.82 - 0.0496828, abs=1e-6)
  assert summary.ci_high == pytest.approx(0.82 + 0.0496828, abs=1e-6)


def test_t_interval_of_one_value_has_no_interval_and_nans_are_left_out():
  one = stats.t_interval([0.5, math.nan])
  assert one.n == 1 and one.mean == 0.5 and math.isnan(one.ci_low) and math.isnan(one.std)


def test_paired_difference_uses_shared_seeds_only():
  arm = {0: 0.90, 1: 0.80, 2: 0.85, 7: 0.10}
  reference = {0: 0.85, 1: 0.81, 2: 0.80, 3: 0.99}
  diff = stats.paired_difference(arm, reference)
  # differences 0.05, -0.01, 0.05: mean 0.03, sd 0.034641, t(0.975,2) half width 0.086053
  assert diff.n == 3 and diff.wins == 2 and diff.losses == 1
  assert diff.mean == pytest.approx(0.03)
  assert diff.std == pytest.approx(0.0346410, abs=1e-6)
  assert diff.ci_high - diff.mean == pytest.approx(0.0860530, abs=1e-5)
  assert diff.p_value == pytest.approx(0.2724, abs=1e-3)  # paired t = 1.5, df 2


def test_holm_adjustment_by_hand():
  # sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
  assert stats.holm([0.01, 0.04, 0.03, math.nan])[:3] == pytest.approx([0.03, 0.06, 0.06])
  assert math.isnan(stats.holm([0.01, 0.04, 0.03, math.nan])[3])
  assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_product_varies_the_last_factor_fastest():
  points = list(grid.product({"a": [1, 2], "seed": [0, 1]}))
  assert points == [
    {"a": 1, "seed": 0},
    {"a": 1, "seed": 1},
    {"a": 2, "seed": 0},
    {"a": 2, "seed": 1},
  ]
  with pytest.raises(ValueError, match="factor 'a' has no values"):
    list(grid.product({"a": []}))


def test_parse_grid_reads_literals_and_refuses_malformed_entries():
  assert grid.parse_grid(["model.first_layer=free,gabor", "seed=0,1", "config.x=0.5"]) == {
    "model.first_layer": ["free", "gabor"],
    "seed": [0, 1],
    "x": [0.5],
  }
  for bad in (["seed"], ["seed="], ["=1"]):
    with pytest.raises(ValueError, match="expected key=value1,value2"):
      grid.parse_grid(bad)
  with pytest.raises(ValueError, match="names 'seed' twice"):
    grid.parse_grid(["seed=0", "seed=1"])


def test_point_names_are_stable_short_and_distinct():
  assert (
    grid.point_name({"model.first_layer": "gabor", "data.train_size": 100, "seed": 1})
    == "first_layer=gabor,train_size=100,seed=1"
  )
  assert grid.point_name({"model.width": 1, "data.width": 2}) == "model.width=1,data.width=2"
  json_spec = '{"source": "hybrid", "groups": [[{"source": "fixed", "bank": "dct"}, 1]]}'
  name = grid.point_name({"model.first_layer": json_spec})
  assert name.startswith("first_layer=hybrid-dct-") and "/" not in name and " " not in name


def test_primary_factors_leave_out_keys_determined_by_an_earlier_factor():
  points = [
    {"data.train_size": size, "seed": seed, "batch_size": 50 if size == 100 else 128}
    for size in (100, 1000)
    for seed in (0, 1)
  ]
  assert grid.factors_of(points) == ["data.train_size", "seed", "batch_size"]
  assert grid.primary_factors(points) == ["data.train_size", "seed"]
