"""Tests of filter grids, filter summaries, norms and animations."""

from __future__ import annotations

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from hybridconv import nn, tracking
from hybridconv.kernels import gabor
from hybridconv.models import SimpleCNN
from hybridconv.nn import KernelConv, conv_layer, sources
from hybridconv.tracking import filters, images, jsonl_logger, norms


def _tiny_cnn(first_layer="hybrid", seed=0):
  # width 0.25: conv1 has 8 filters (hybrid: 4 Gabor then 4 free), conv2 has 16.
  return SimpleCNN(10, (28, 28, 1), first_layer=first_layer, width=0.25, rngs=nnx.Rngs(seed))


def _tiles(grid, kernel_shape, n, tile_pixels=64):
  layout = images.GridLayout.make(kernel_shape, n, tile_pixels)
  th, tw = layout.tile
  return [grid[top : top + th, left : left + tw] for top, left in map(layout.box, range(n))]


# -- grids ---------------------------------------------------------------------


def test_grey_grid_normalises_each_filter_symmetrically_with_zero_mid_grey():
  rng = np.random.default_rng(0)
  kernel = rng.normal(size=(5, 5, 1, 4)).astype(np.float32)
  kernel[..., 1] *= 1000.0  # filters of very different scales both use the full range
  kernel[2, 2, 0, 2] = 0.0
  grid = tracking.kernel_grid(kernel)
  factor = 13  # ceil(64 / 5)
  assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[-1] == 3
  tiles = _tiles(grid, (5, 5), 4)
  for i, tile in enumerate(tiles):
    assert tile.shape == (65, 65, 3)
    k = kernel[..., 0, i]
    expected = np.round(255 * (0.5 + 0.5 * k / np.abs(k).max())).astype(np.uint8)
    np.testing.assert_array_equal(tile[::factor, ::factor, 0], expected)
    np.testing.assert_array_equal(tile[..., 0], tile[..., 2])  # grey
    assert tile.min() == 0 or tile.max() == 255  # the largest magnitude reaches black or white
    assert len(np.unique(tile)) > 10  # a real range, not a flat tile
  assert tiles[2][2 * factor, 2 * factor, 0] == 128  # zero is mid-grey
  np.testing.assert_array_equal(grid[0, 0], [128, 128, 128])  # padding is zero's grey


def test_32_small_filters_make_a_legible_grid_with_grey_empty_cells():
  kernel = np.random.default_rng(0).normal(size=(5, 5, 1, 32)).astype(np.float32)
  grid = tracking.kernel_grid(kernel)
  assert min(grid.shape[:2]) >= 400  # was 217x217
  layout = images.GridLayout.make((5, 5), 32, 64)
  assert (layout.cols, layout.rows) == (6, 6) and layout.tile == (65, 65)
  # Cells 32..35 of the last row are empty: all mid-grey (zero), not black.
  top, left = layout.box(33)
  empty = grid[
    top - layout.frame - layout.label : top + layout.tile[0] + layout.frame,
    left - layout.frame : left + layout.tile[1] + layout.frame,
  ]
  assert empty.size and np.all(empty == 128)
  # A tile's number is drawn in the strip above it (white text on grey).
  strip = grid[
    top - layout.frame - layout.label : top - layout.frame,
    layout.box(31)[1] : layout.box(31)[1] + layout.tile[1],
  ]
  assert strip.max() > 200 and not np.any(np.all(grid == 0, axis=-1)[: layout.gap])


def test_colour_grid_shows_rgb_filters_in_colour():
  kernel = np.zeros((3, 3, 3, 2), np.float32)
  kernel[1, 1, 0, 0] = 1.0  # a red dot
  kernel[:, :, 2, 1] = -1.0  # a filter that hates blue
  grid = tracking.kernel_grid(kernel, tile_pixels=3)
  assert grid.shape[-1] == 3 and grid.dtype == np.uint8
  red, anti_blue = _tiles(grid, (3, 3), 2, tile_pixels=3)
  np.testing.assert_array_equal(red[1, 1], [255, 128, 128])
  np.testing.assert_array_equal(red[0, 0], [128, 128, 128])
  np.testing.assert_array_equal(anti_blue[0, 0], [128, 128, 0])


def test_many_input_channels_show_the_dominant_spatial_component():
  rng = np.random.default_rng(1)
  spatial = rng.normal(size=(4, 4, 3))
  colour = np.abs(rng.normal(size=(8, 3)))  # positive weights: the component keeps its sign
  kernel = (spatial[:, :, None, :] * colour[None, None]).astype(np.float32)
  grid = tracking.kernel_grid(kernel, tile_pixels=4)
  for i, tile in enumerate(_tiles(grid, (4, 4), 3, tile_pixels=4)):
    s = spatial[..., i]
    expected = np.round(255 * (0.5 + 0.5 * s / np.abs(s).max())).astype(np.uint8)
    np.testing.assert_allclose(tile[..., 0], expected, atol=1)


def _frame_colours(grid, layout, i):
  top, left = layout.box(i)
  f = layout.frame
  return {
    tuple(grid[top - f, left + 1]),
    tuple(grid[top + layout.tile[0], left + 1]),
    tuple(grid[top + 1, left - f]),
    tuple(grid[top + 1, left + layout.tile[1]]),
  }


def test_hybrid_grid_frames_each_group_in_its_colour_with_a_legend():
  kernel = np.random.default_rng(2).normal(size=(5, 5, 1, 6)).astype(np.float32)
  groups = [images.GridGroup("gabor", 0, 2), images.GridGroup("free", 2, 6)]
  grid = tracking.kernel_grid(kernel, groups=groups)
  plain = tracking.kernel_grid(kernel)
  layout = images.GridLayout.make((5, 5), 6, 64)
  blue, orange = images.GROUP_COLOURS[:2]
  for i in range(6):
    assert _frame_colours(grid, layout, i) == {blue if i < 2 else orange}
    assert _frame_colours(plain, layout, i) == {images.NO_GROUP_COLOUR}
  legend = grid[layout.size[0] :]
  assert legend.shape[0] >= 2 * 14  # one line per group
  for colour in (blue, orange):  # the legend's swatches
    assert np.any(np.all(legend == colour, axis=-1))
  assert plain.shape[0] == layout.size[0]  # no groups, no legend


def test_grid_of_zero_kernel_is_grey_and_max_filters_caps_the_tiles():
  grid = tracking.kernel_grid(np.zeros((3, 3, 1, 9), np.float32), tile_pixels=3, max_filters=4)
  layout = images.GridLayout.make((3, 3), 4, 3)
  assert grid.shape[:2] == layout.size
  for tile in _tiles(grid, (3, 3), 4, tile_pixels=3):
    assert np.all(tile == 128)


@pytest.mark.parametrize("kwargs", [{"max_filters": 0}, {"tile_pixels": 0}])
def test_grid_refuses_bad_settings(kwargs):
  with pytest.raises(ValueError, match="need max_filters"):
    tracking.kernel_grid(np.zeros((3, 3, 1, 2), np.float32), **kwargs)


def test_grid_refuses_non_hwio_kernels():
  with pytest.raises(ValueError, match=r"\(kh, kw, cin, cout\)"):
    tracking.kernel_grid(np.zeros((3, 3, 2), np.float32))


# -- summaries -------------------------------------------------------------------


def test_kernel_groups_find_channel_ranges_of_hybrid_and_bankmix_layers():
  model = _tiny_cnn()
  layers = nn.conv_layers(model)
  assert list(layers) == ["conv1", "conv2"]
  assert [(g.kind, g.start, g.stop) for g in nn.kernel_groups(layers["conv1"])] == [
    ("gabor", 0, 4),
    ("free", 4, 8),
  ]
  assert [(g.kind, g.start, g.stop) for g in nn.kernel_groups(layers["conv2"])] == [("free", 0, 16)]
  bankmix = conv_layer(
    1,
    4,
    5,
    source=sources.BankMix(
      bank=sources.Fixed("gabor", options={"num_orientations": 4, "num_scales": 1})
    ),
    rngs=nnx.Rngs(0),
  )
  groups = nn.kernel_groups(bankmix)
  assert [(g.kind, g.start, g.stop) for g in groups] == [("frozen", 0, bankmix.bank_size)]


def test_filter_tracker_sends_the_documented_keys_at_each_call():
  model = _tiny_cnn()
  logger = tracking.MemoryLogger()
  tracker = tracking.FilterTracker(logger, gabor_fit=False)
  for step in (0, 5):
    tracker(model, step)
  assert logger.steps("images", "filters/conv1") == [0, 5]
  assert logger.keys("images", step=0) == {"filters/conv1", "filters/conv2"}
  assert logger.keys("images", step=5) == {
    "filters/conv1",
    "filters/conv2",
    "filters_change/conv1",
    "filters_change/conv2",
  }
  learned, fixed = ("theta", "frequency"), ("sigma", "gamma", "psi")  # sources.Gabor's default
  assert logger.keys("histograms", step=5) == (
    {f"gabor/conv1/{p}" for p in learned}
    | {f"gabor/conv1/fixed/{p}" for p in fixed}
    | {
      f"filters/{layer}/{kind}_energy"
      for layer in ("conv1", "conv2")
      for kind in ("orientation", "frequency")
    }
  )
  assert logger.keys("scalars", step=5) == (
    {f"gabor/conv1/drift/{p}" for p in learned}
    | {"filters/conv1/orientation_selectivity", "filters/conv2/orientation_selectivity"}
  )
  assert logger.keys("table", step=5) == {"gabor/conv1"}
  image = [e for e in logger.events if e.kind == "images"][0].data["filters/conv1"]
  assert image.dtype == np.uint8 and image.min() == 0 and image.max() == 255


def test_change_grid_shows_what_moved_since_the_first_summary_on_one_scale(tmp_path):
  model = _tiny_cnn(first_layer="free")
  logger = tracking.MemoryLogger()
  path = str(tmp_path / "filters" / "initial_gabor_parameters.npz")
  tracking.FilterTracker(logger, gabor_fit=False, state_path=path)(model, 0)
  assert "filters_change/conv1" not in logger.keys("images")  # nothing changed yet
  kernel = model.conv1.kernel_source.kernel
  moved = np.zeros(kernel.shape, np.float32)
  moved[2, 2, 0, 1] = 0.01  # filter 1 moves a little at one pixel, the others not at all
  kernel[...] = kernel[...] + moved
  resumed = tracking.FilterTracker(logger, gabor_fit=False, state_path=path)  # a restart
  resumed(model, 7)
  grid = [e.data for e in logger.events if e.kind == "images" and e.step == 7][0]
  change = grid["filters_change/conv1"]
  tiles = _tiles(change, (5, 5), 8)
  assert tiles[1].max() == 255 and np.count_nonzero(tiles[1][..., 0] != 128) == 13 * 13
  for i in (0, 2, 7):
    assert np.all(tiles[i] == 128)  # unmoved filters are flat zero-grey
  caption = change[images.GridLayout.make((5, 5), 8, 64).size[0] :]
  assert caption.shape[0] >= 2 * 14 and caption.max() > 200  # the scale is written under it
  assert "filters_change/conv1" in logger.keys("images", step=7)


def test_drift_measures_parameter_changes_since_the_first_summary():
  model = _tiny_cnn()
  logger = tracking.MemoryLogger()
  tracker = tracking.FilterTracker(logger, gabor_fit=False)
  first = tracker(model, 0)
  assert all(first[f"gabor/conv1/drift/{p}"] == 0 for p in ("theta", "frequency"))
  assert not any(f"gabor/conv1/drift/{p}" in first for p in ("sigma", "gamma", "psi"))  # fixed
  gabor_module = nn.kernel_groups(model.conv1)[0].module
  initial = filters.gabor_values(gabor_module)
  gabor_module.theta[...] = gabor_module.theta[...] + 0.1 + np.pi  # +pi is the same orientation
  gabor_module.frequency[...] = gabor_module.frequency[...] + 0.2
  later = tracker(model, 10)
  assert later["gabor/conv1/drift/theta"] == pytest.approx(0.1, abs=1e-5)
  new_frequency = filters.gabor_values(gabor_module)["frequency"]
  assert later["gabor/conv1/drift/frequency"] == pytest.approx(
    np.mean(np.abs(new_frequency / initial["frequency"] - 1)), rel=1e-6
  )
  table = [e.data for e in logger.events if e.kind == "table" and e.step == 10][0]
  rows = [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]
  assert [r["filter"] for r in rows] == [0, 1, 2, 3]
  assert all(0 <= r["theta"] < np.pi for r in rows)
  assert all(r["d_theta"] == pytest.approx(0.1, abs=1e-5) for r in rows)


def test_initial_parameters_survive_a_restart_through_state_path(tmp_path):
  model = _tiny_cnn()
  path = str(tmp_path / "filters" / "initial_gabor_parameters.npz")
  tracking.FilterTracker(tracking.MemoryLogger(), gabor_fit=False, state_path=path)(model, 0)
  gabor_module = nn.kernel_groups(model.conv1)[0].module
  gabor_module.theta[...] = gabor_module.theta[...] + 0.05
  resumed = tracking.FilterTracker(tracking.MemoryLogger(), gabor_fit=False, state_path=path)
  assert resumed(model, 100)["gabor/conv1/drift/theta"] == pytest.approx(0.05, abs=1e-5)


class _ColourLayer(nnx.Module):
  def __init__(self):
    self.conv1 = KernelConv(3, 16, 9, source="free", rngs=nnx.Rngs(0))


@pytest.mark.slow
def test_gabor_fit_scores_gabor_kernels_high_and_noise_low():
  model = _ColourLayer()
  rng = np.random.default_rng(0)
  theta = np.linspace(0, np.pi, 8, endpoint=False)
  spatial = np.asarray(gabor.gabor_real((9, 9), theta, 0.18, 2.0, 1.0, 0.3))  # (9, 9, 8)
  colour = np.abs(rng.normal(size=(3, 8)))
  kernel = np.concatenate(
    [spatial[:, :, None, :] * colour[None, None], rng.normal(size=(9, 9, 3, 8))], axis=-1
  ).astype(np.float32)
  model.conv1.kernel_source.kernel[...] = jnp.asarray(kernel)
  logger = tracking.MemoryLogger()
  scalars = tracking.FilterTracker(logger, gabor_fit=True)(model, 0)
  table = [e.data for e in logger.events if e.kind == "table"][0]
  assert table["name"] == "gabor_fit/conv1"
  rows = [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]
  assert [r["filter"] for r in rows] == list(range(16))
  assert min(r["r2"] for r in rows[:8]) > 0.98
  assert max(r["r2"] for r in rows[8:]) < 0.6
  fitted = np.array([r["theta"] for r in rows[:8]])
  np.testing.assert_allclose(np.angle(np.exp(2j * (fitted - theta))) / 2, 0, atol=np.deg2rad(2))
  assert scalars["gabor_fit/conv1/frac_r2_above_0.8"] == pytest.approx(0.5)
  assert scalars["gabor_fit/conv1/frac_r2_above_0.5_blob_or_edge"] == 0  # striped, f*sigma=0.36
  assert set(scalars) >= {"gabor_fit/conv1/r2_median", "gabor_fit/conv1/spatial_r2_mean"}
  assert "gabor_fit/conv1/r2" in logger.keys("histograms")
  null = [scalars[f"gabor_fit/conv1/null_r2_{q}"] for q in ("q25", "median", "q75")]
  assert null == sorted(null) and null[-1] < 0.9  # surrogates of these filters: no Gabors
  quiet = tracking.FilterTracker(tracking.MemoryLogger(), gabor_fit=True, null_draws=0)(model, 0)
  assert "gabor_fit/conv1/null_r2_median" not in quiet


# -- norms ---------------------------------------------------------------------


def test_scalar_metrics_match_optax_globally_and_split_by_layer():
  model = _tiny_cnn()
  params = nnx.state(model, nnx.Param)
  grads = jax.tree.map(lambda x: 0.5 * jnp.ones_like(x), params)
  updates = jax.tree.map(lambda x: -0.01 * x, params)
  out = jax.jit(tracking.scalar_metrics)(grads, params, updates)
  for name, tree in (("grad_norm", grads), ("param_norm", params), ("update_norm", updates)):
    assert out[f"train/{name}"] == pytest.approx(float(optax.tree.norm(tree)), rel=1e-5)
    layers = {k.split("/", 1)[1] for k in out if k.startswith(f"{name}/")}
    assert layers == {"conv1", "conv2", "bn1", "bn2", "fc1", "fc2"}
    total = sum(float(out[f"{name}/{layer}"]) ** 2 for layer in layers)
    assert np.sqrt(total) == pytest.approx(float(out[f"train/{name}"]), rel=1e-5)
  conv1 = params["conv1"]
  expected = np.sqrt(sum(float(jnp.sum(x**2)) for x in jax.tree.leaves(conv1)))
  assert float(out["param_norm/conv1"]) == pytest.approx(expected, rel=1e-5)


def test_layer_name_cuts_at_the_kernel_module():
  key = jax.tree_util.DictKey
  path = (
    key("stage1"),
    key(0),
    key("conv1"),
    key("kernel_source"),
    key("groups"),
    key(1),
    key("theta"),
    jax.tree_util.GetAttrKey("value"),
  )
  assert norms.layer_name(path) == "stage1_0_conv1"
  assert norms.layer_name((key("fc1"), key("kernel"))) == "fc1"


# -- files and animations ---------------------------------------------------------


def test_tracker_through_jsonl_writes_pngs_and_one_gif_per_layer(tmp_path):
  model = _tiny_cnn()
  logger = jsonl_logger.JsonlLogger(str(tmp_path))
  tracker = tracking.FilterTracker(logger, gabor_fit=False)
  gabor_module = nn.kernel_groups(model.conv1)[0].module
  for step in (0, 10, 20):
    tracker(model, step)
    gabor_module.theta[...] = gabor_module.theta[...] + 0.3
  logger.close()
  frames = images.frame_steps(str(tmp_path / "filters" / "conv1"))
  assert [s for s, _ in frames] == [0, 10, 20]
  gifs = tracking.write_animations(str(tmp_path))
  assert sorted(gifs) == [
    str(tmp_path / "filters" / "conv1.gif"),
    str(tmp_path / "filters" / "conv2.gif"),
  ]
  animation = iio.imread(gifs[0], index=None)
  assert animation.shape[0] == 3 and animation.dtype == np.uint8
  assert not np.array_equal(animation[0], animation[-1])  # the Gabor filters turned
  assert tracking.write_animations(str(tmp_path / "nothing")) == []


def test_log_animations_sends_every_layer_gif_to_the_logger(tmp_path):
  logger = jsonl_logger.JsonlLogger(str(tmp_path))
  for step in (0, 4):
    logger.log_images(
      step,
      {
        "filters/conv1": np.full((5, 7, 3), 50 * step, np.uint8),
        "filters/stage1_block1_conv1": np.zeros((5, 7, 1), np.uint8),
      },
    )
  memory = tracking.MemoryLogger()
  gifs = tracking.log_animations(tracking.MultiLogger([logger, memory]), str(tmp_path), 4)
  videos = {
    k: v for e in memory.events if e.kind == "video" and e.step == 4 for k, v in e.data.items()
  }
  assert videos == {
    "filters_gif/conv1": str(tmp_path / "filters" / "conv1.gif"),
    "filters_gif/stage1_block1_conv1": str(tmp_path / "filters" / "stage1_block1_conv1.gif"),
  }
  assert sorted(videos.values()) == sorted(gifs)


def test_animation_of_a_single_summary_is_a_one_frame_gif(tmp_path):
  # A run stopped before its second summary (e.g. preempted) has one frame per layer.
  logger = jsonl_logger.JsonlLogger(str(tmp_path))
  logger.log_images(0, {"filters/conv1": np.full((5, 7, 1), 200, np.uint8)})
  logger.close()
  (gif,) = tracking.write_animations(str(tmp_path))
  frames = iio.imread(gif, index=None)
  assert frames.shape[0] == 1 and frames.dtype == np.uint8


def test_filter_grids_say_their_step_scale_and_channel_summary():
  from hybridconv.tracking import images  # noqa: PLC0415

  assert images.filter_caption(np.zeros((5, 5, 1, 8)), 40) == [
    "step 40; each tile scaled to its own largest magnitude (0 = mid-grey)"
  ]
  many = images.filter_caption(np.zeros((5, 5, 16, 8)), 0)
  assert (
    many[1] == "each tile: the dominant spatial component over the 16 input channels (rank-1 SVD)"
  )
  with_caption = images.kernel_grid(np.ones((5, 5, 16, 4)), caption=many)
  assert with_caption.shape[0] > images.kernel_grid(np.ones((5, 5, 16, 4))).shape[0]
