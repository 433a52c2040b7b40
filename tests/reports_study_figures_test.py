"""The study report's filter mosaic and its cached Gabor-likeness positive control."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hybridconv.reports import study_figures
from hybridconv.studies import likeness


def test_mosaic_canvas_places_each_tile_scaled_on_its_own():
  rng = np.random.default_rng(0)
  first = rng.normal(size=(3, 3, 4))
  second = rng.normal(size=(3, 3, 2)) * 50.0
  canvas = study_figures.mosaic_canvas([first, second])
  assert canvas.shape == (2 * 4 + 1, 4 * 4 + 1)
  for r, tiles in enumerate((first, second)):
    for c in range(tiles.shape[-1]):
      tile = canvas[1 + 4 * r : 4 + 4 * r, 1 + 4 * c : 4 + 4 * c]
      np.testing.assert_allclose(tile, tiles[..., c] / np.abs(tiles[..., c]).max())
  # Gaps and the missing tiles of the shorter row are blank (NaN), nothing else is.
  assert np.isnan(canvas[0]).all() and np.isnan(canvas[:, 0]).all()
  assert np.isnan(canvas[5:8, 9:]).all()
  assert np.isfinite(canvas[5:8, 1:4]).all() and np.isnan(canvas[5:8, 4]).all()


def test_mosaic_canvas_keeps_a_zero_tile_zero_and_caps_the_width():
  canvas = study_figures.mosaic_canvas([np.zeros((2, 2, 5))], max_filters=3)
  assert canvas.shape == (4, 10)
  assert np.nansum(np.abs(canvas)) == 0 and np.isfinite(canvas).sum() == 3 * 4


def test_kernel_mosaic_writes_a_figure(tmp_path):
  rows = {"a: end": np.ones((7, 7, 32)), "b: change": -np.ones((7, 7, 12))}
  path = study_figures.kernel_mosaic(rows, title="t", path=str(tmp_path / "f" / "m.png"))
  assert os.path.getsize(path) > 1000


def test_positive_control_is_scored_once_then_read_from_its_cache(tmp_path, monkeypatch):
  calls = []

  def fake_scores(kernel, seed=0):
    calls.append(kernel.shape)
    return {"frac_above_null_p95": 0.9, "r2": [0.8] * kernel.shape[-1]}

  monkeypatch.setattr(likeness, "score_kernels", fake_scores)
  first = likeness.positive_control((7, 7), 32, cache_dir=str(tmp_path))
  assert calls == [(7, 7, 1, 32)]
  with open(tmp_path / likeness.CONTROL_FILE, encoding="utf-8") as f:
    assert json.load(f)["scores"] == first
  assert likeness.positive_control((7, 7), 32, cache_dir=str(tmp_path)) == first
  assert len(calls) == 1  # read, not rescored
  # Another layer shape is another control: scored again (and the cache replaced).
  likeness.positive_control((9, 9), 16, cache_dir=str(tmp_path))
  assert calls[-1] == (9, 9, 1, 16)
  # Without a cache directory nothing is written.
  likeness.positive_control((7, 7), 32)
  assert len(calls) == 3


def test_a_stale_control_cache_is_not_used(tmp_path, monkeypatch):
  monkeypatch.setattr(likeness, "score_kernels", lambda kernel, seed=0: {"fresh": True})
  stale = {"version": likeness.VERSION - 1, "kernel_size": [7, 7], "num_filters": 32}
  (tmp_path / likeness.CONTROL_FILE).write_text(json.dumps({**stale, "scores": {"old": 1}}))
  assert likeness.positive_control((7, 7), 32, cache_dir=str(tmp_path)) == {"fresh": True}


@pytest.mark.parametrize("content", ["{not json", "[]"])
def test_an_unreadable_control_cache_is_rescored(tmp_path, monkeypatch, content):
  monkeypatch.setattr(likeness, "score_kernels", lambda kernel, seed=0: {"fresh": True})
  (tmp_path / likeness.CONTROL_FILE).write_text(content)
  assert likeness.positive_control((7, 7), 32, cache_dir=str(tmp_path)) == {"fresh": True}


def test_a_flat_orientation_histogram_is_drawn_from_zero(tmp_path, monkeypatch):
  kept = []
  monkeypatch.setattr(study_figures, "save", lambda fig, path, **_: kept.append(fig) or path)
  theta = np.linspace(0, np.pi, 64, endpoint=False)  # perfectly even: 1/8 in every bin
  frequency = np.full(64, 0.1)
  study_figures.gabor_parameters(
    {"gabor": (theta, theta)}, {"100": (frequency, frequency)}, None, path=str(tmp_path / "g.png")
  )
  low, high = kept[0].axes[0].get_ylim()
  assert low == 0 and high >= 0.3  # a flat line sits low, instead of filling the plot
