"""The study figures read truly: one style per arm in every panel, the forest's colours follow
Holm, no one-dot "curves", labelled filter rows, a page-sized Gabor-likeness figure."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from hybridconv.reports import forest_plot, study_curves, study_figures, study_filters
from hybridconv.studies import likeness


@pytest.fixture
def drawn(monkeypatch):
  """The figures the drawing functions would save, kept open for inspection."""
  kept = []
  monkeypatch.setattr(study_figures, "save", lambda fig, path, **_: kept.append(fig) or path)
  return kept


def _band(values):
  x = np.arange(len(values), dtype=float)
  v = np.asarray(values, float)
  return x, v, v - 0.1, v + 0.1


def _line_colours(ax) -> dict[str, tuple]:
  return {line.get_label(): to_rgba(line.get_color()) for line in ax.get_lines()}


class _Run:
  """The part of a ``RunRecord`` the curve figures read."""

  def __init__(self, arm, seed, metrics, path="/nonexistent"):
    self.flat = {"arm": arm, "seed": seed, "data.train_size": 100, "batch_size": 10}
    self.metrics = {k: (np.asarray(s, int), np.asarray(v, float)) for k, (s, v) in metrics.items()}
    self.path = path

  def series(self, key):
    return self.metrics.get(key, (np.zeros(0, int), np.zeros(0)))


def test_an_arm_keeps_its_colour_in_every_panel_and_one_legend_names_all(drawn, tmp_path):
  panels = {
    "100 images": {"a": _band([1, 2]), "b": _band([2, 3]), "c": _band([3, 4])},
    "1000 images": {"b": _band([2, 3]), "c": _band([3, 4])},  # no "a" here
  }
  study_figures.panels_with_bands(
    panels, title="t", xlabel="x", ylabel="y", path=str(tmp_path / "p.png")
  )
  (fig,) = drawn
  first, second = _line_colours(fig.axes[0]), _line_colours(fig.axes[1])
  assert set(second) == {"b", "c"}
  for group in second:
    assert second[group] == first[group], group
  (legend,) = fig.legends
  assert [t.get_text() for t in legend.get_texts()] == ["a", "b", "c"]
  assert not any(ax.get_legend() for ax in fig.axes)


def test_eleven_arms_get_eleven_distinct_colours_and_a_fixed_order():
  names = [f"arm{i:02d}" for i in range(11)]
  styles = study_figures.group_styles(reversed(names))
  assert list(styles) == names  # sorted: the same arm set maps alike in every figure
  assert len({to_rgba(s["color"]) for s in styles.values()}) == 11
  many = study_figures.group_styles(f"g{i:02d}" for i in range(27))
  assert len({(to_rgba(s["color"]), s["linestyle"], s["marker"]) for s in many.values()}) == 27


def test_the_study_styles_hold_across_figures_with_fewer_arms(drawn, tmp_path):
  styles = study_figures.group_styles(f"arm{i:02d}" for i in range(11))
  few = {"arm03": _band([1, 2]), "arm10": _band([2, 3])}  # e.g. the runs rated for robustness
  study_figures.panels_with_bands(
    {"p": few}, title="t", xlabel="x", ylabel="y", path=str(tmp_path / "p.png"), styles=styles
  )
  study_figures.lines_with_bands(
    few, title="t", xlabel="x", ylabel="y", path=str(tmp_path / "l.png"), styles=styles
  )
  for fig in drawn:
    colours = _line_colours(fig.axes[0])
    for arm in few:
      assert colours[arm] == to_rgba(styles[arm]["color"]), arm
  legend = drawn[0].legends[0]
  assert [t.get_text() for t in legend.get_texts()] == ["arm03", "arm10"]  # only those drawn


def test_a_forest_row_is_coloured_only_when_it_survives_holm(drawn, tmp_path):
  alpha = 0.05
  same_interval = (1.0, 0.2, 1.8)  # excludes 0 either way
  assert forest_plot.forest_colour(*same_interval, 0.01, alpha) == "tab:blue"
  assert forest_plot.forest_colour(-1.0, -1.8, -0.2, 0.01, alpha) == "tab:red"
  unadjusted = forest_plot.forest_colour(*same_interval, 0.2, alpha)
  spans = forest_plot.forest_colour(1.0, -0.5, 2.5, 0.2, alpha)
  assert len({"tab:blue", unadjusted, spans}) == 3
  assert forest_plot.forest_colour(*same_interval, float("nan"), alpha) == unadjusted

  panels = {"100 images": {"end": {"held": (*same_interval, 0.01), "lost": (*same_interval, 0.2)}}}
  forest_plot.forest(panels, reference="free", path=str(tmp_path / "f.png"), alpha=alpha)
  (fig,) = drawn
  ax = fig.axes[0]
  ticks = {t.get_text(): t.get_position()[1] for t in ax.get_yticklabels()}
  by_row = {}
  for line in ax.get_lines()[:-1]:  # the last one is the zero line
    row = next(name for name, y in ticks.items() if np.isclose(line.get_ydata()[0], y))
    by_row.setdefault(row, set()).add(to_rgba(line.get_color()))
  assert by_row["held"] == {to_rgba("tab:blue")}
  assert by_row["lost"] == {to_rgba(unadjusted)}
  # The legend explains the encodings with neutral markers, not the first arm's colour.
  (legend,) = fig.legends
  texts = [t.get_text() for t in legend.get_texts()]
  assert texts[0] == "end" and any("Holm" in t for t in texts)
  assert to_rgba(legend.legend_handles[0].get_color()) == to_rgba("black")


def test_no_test_curve_is_drawn_where_test_is_read_once_after_validation(tmp_path):
  validated = [
    _Run(arm, seed, {"val/accuracy": ([5, 10], [0.5, 0.6]), "eval/accuracy": ([10], [0.6])})
    for arm in ("a", "b")
    for seed in (0, 1)
  ]
  periodic = [
    _Run(arm, seed, {"eval/accuracy": ([5, 10], [0.5, 0.6])})
    for arm in ("a", "b")
    for seed in (0, 1)
  ]
  assert study_curves.test_read_only_at_end(validated)
  assert not study_curves.test_read_only_at_end(periodic)

  def arms(runs):
    return {arm: [r for r in runs if r.flat["arm"] == arm] for arm in ("a", "b")}

  assert study_curves.curves_figure(validated, arms(validated), False, str(tmp_path)) is None
  assert study_curves.curves_figure(periodic, arms(periodic), False, str(tmp_path))
  # The training loss is drawn either way.
  for run in validated:
    run.metrics["train/loss"] = (np.array([5, 10]), np.array([1.0, 0.5]))
  assert study_curves.curves_figure(
    validated, arms(validated), False, str(tmp_path), key="train/loss", label="training loss"
  )


def test_filter_rows_name_their_run_and_gaps_differ_from_every_tile(drawn, tmp_path):
  run = _Run("free", 3, {})
  run.flat["data.train_size"] = 55000
  assert study_filters.run_label("free", run) == "free, 55,000 images, seed 3"
  study_figures.kernel_mosaic(
    {"dc: end": np.ones((3, 3, 2)), "neg: end": -np.ones((3, 3, 2))},
    title="t",
    path=str(tmp_path / "m.png"),
  )
  (fig,) = drawn
  (image,) = fig.axes[0].get_images()
  gap = image.cmap(np.ma.masked_invalid([np.nan]))[0]
  tiles = image.cmap(image.norm(np.linspace(-1, 1, 256)))
  assert not np.isclose(tiles, gap).all(axis=1).any()  # not even a constant white or black tile
  assert gap[3] == 1  # opaque: the page's white does not show through


def test_gabor_likeness_is_one_page_sized_panel_per_size(drawn, tmp_path, monkeypatch):
  arms = [f"arm_{i}" for i in range(11)]
  sizes = (100, 1000, 10000, 55000)
  runs = []
  for size in sizes:
    for arm in arms[: 6 if size == 55000 else 11]:
      for seed in (0, 1):
        run = _Run(arm, seed, {}, path=f"{arm},{size},{seed}")
        run.flat["data.train_size"] = size
        runs.append(run)
  reading = {"frac_above_null_p95": 0.5, "r2_mean": 0.6, "r2": [0.5] * 4, "null_r2_median": 0.5}
  score = {"kernel_size": [7, 7], "initial": reading, "final": reading}
  monkeypatch.setattr(likeness, "run_likeness", lambda path: score)
  monkeypatch.setattr(
    likeness, "positive_control", lambda *a, **k: {"frac_above_null_p95": 0.9, "r2_mean": 0.8}
  )
  path, table = study_filters.likeness_figure(str(tmp_path), runs, ["arm"], True, str(tmp_path))
  assert path and len(table) > 40
  (fig,) = drawn
  panels = [ax for ax in fig.axes if ax.get_title()]
  assert [ax.get_title() for ax in panels] == [f"{s:,} training images" for s in sizes]
  assert [t.get_text() for t in panels[0].get_yticklabels()] == sorted(arms, reverse=True)
  width, height = fig.get_size_inches()
  assert width <= 16 and height <= 8  # at dpi 110: under ~1800 px wide, labels at 8 pt
