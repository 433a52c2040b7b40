"""Filter summaries: what every conv layer's kernels look like, at the rare cadence.

:class:`FilterTracker` is called with the model every ``config.tracking.filters_every``
steps (and at step 0) and sends, for each layer with a kernel source
(``KernelConv`` and ``BankMixConv``; ``<layer>`` is its spec name, the
attribute path joined by '_' as in ``model.kernels``, e.g. ``conv1`` or
``stage1_block1_conv1``; see :func:`conv_layers`):

* ``filters/<layer>``: the filter grid image (:func:`images.kernel_grid`):
  numbered tiles, one frame colour per kernel source with a legend; the JSONL
  backend writes it to ``filters/<layer>/step_XXXXXXX.png``.
* ``filters_change/<layer>`` (layers with learned channels, from the second
  summary on): the grid of ``kernel - kernel at the first summary`` on one
  shared scale, its caption giving the largest change relative to the
  largest initial weight -- free filters that barely move look the same
  first to last by eye, and this grid shows where and how much they moved.
* Spectral energy of the shown spatial kernels
  (:mod:`hybridconv.analysis.filter_stats`): histograms
  ``filters/<layer>/orientation_energy`` (mean share of energy per orientation
  bin, edges in degrees) and ``filters/<layer>/frequency_energy`` (per radial
  band, cycles/pixel), scalar ``filters/<layer>/orientation_selectivity`` (mean).
* Parametric Gabor groups (``<g>`` is the layer, or ``<layer>/<group path>``
  when a layer has several): histograms ``gabor/<g>/<param>`` of the
  learned parameters' constrained values (``gabor/<g>/fixed/<param>`` for
  those not learned, so no plot shows them as a learned distribution):
  theta wrapped to [0, pi), radians; frequency in cycles/pixel; sigma in
  pixels; gamma; psi in radians. A per-filter table ``gabor/<g>`` with the
  values and their change since the first summary, and drift scalars
  ``gabor/<g>/drift/<param>`` of the learned parameters: mean |change| for
  theta (wrapped to [-pi/2, pi/2)) and psi (wrapped to [-pi, pi)), mean |p / p0 - 1| for
  frequency, sigma and gamma.
* Gabor-likeness of free (learned) kernels of at least ``min_fit_size``
  pixels a side (smaller ones have too few pixels to tell a Gabor from
  anything else), fitted by :func:`hybridconv.analysis.gabor_fit.fit_conv_kernel`
  in 'dominant' mode (a colour filter is read as a spatial pattern times a
  colour): scalars ``gabor_fit/<layer>/r2_mean``, ``r2_median``, ``r2_q25``,
  ``r2_q75``, ``frac_r2_above_0.5``, ``frac_r2_above_0.8``,
  ``frac_r2_above_0.5_blob_or_edge`` (of those, fits with fewer than 0.2
  cycles per envelope sigma: Gaussian blobs and edges, see
  :func:`hybridconv.analysis.gabor_fit.layer_gabor_summary`), histogram
  ``gabor_fit/<layer>/r2`` and table ``gabor_fit/<layer>`` (per filter: R^2,
  the fitted parameters, ``spatial_r2`` and ``colour_energy``). ``r2`` is the
  whole filter's score (all input channels, ``ConvGaborFit.r2_filter``);
  ``spatial_r2`` (and scalar ``spatial_r2_mean``) scores only the dominant
  spatial component, and ``colour_energy`` is that component's share of the
  filter's energy -- deep layers mix many inputs, so their whole-filter score
  stays low even when the dominant pattern is a clean Gabor. Only free
  channels are fitted: parametric ones are Gabors by construction, fixed and
  random ones never change. The null band: ``gabor_fit/<layer>/null_r2_median``,
  ``null_r2_q25``, ``null_r2_q75`` -- the same fitter's R^2 for phase-randomised
  copies of the same filters (same shape and power spectrum, no spatial
  structure; :mod:`hybridconv.analysis.gabor_null`), the score a layer must
  beat to be called Gabor-like.

The initial Gabor parameters (the reference for drift) and kernels (the
reference of the change grids) are those of the first call; with
``state_path`` they are saved there (kernels in ``initial_kernels.npz`` next to
it) and reloaded, so a resumed run keeps measuring from the true
initialisation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hybridconv.analysis import filter_stats, gabor_fit, gabor_null
from hybridconv.kernels.gabor import GABOR_PARAMETERS
from hybridconv.nn import KernelGroup, conv_layers, kernel_groups
from hybridconv.nn import kernel_modules as km
from hybridconv.run_layout import FILTERS_DIR, INITIAL_KERNELS_FILE
from hybridconv.tracking import images
from hybridconv.tracking import logger as logger_lib

_RELATIVE = ("frequency", "sigma", "gamma")
ORIENTATION_BINS = 8


def local_replica(tree: Any) -> Any:
  """This process's copy of a replicated pytree (a train state), as host NumPy arrays.

  Filter summaries run on process 0 alone, but in a multi-host run the
  replicated parameters are not fully addressable by one process; each
  process does hold a complete replica, which is what is summarised. PRNG
  key arrays are passed through.
  """

  def local(x):
    if not isinstance(x, jax.Array) or jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
      return x
    if not x.is_fully_addressable:
      x = x.addressable_data(0)
    return np.asarray(x)

  return jax.tree.map(local, tree)


ANIMATION_KEY = "filters_gif"


def log_animations(logger: logger_lib.Logger, workdir: str, step: int) -> list[str]:
  """Writes one GIF per layer (:func:`images.write_animations`) and logs each as a video.

  The keys are ``filters_gif/<layer>`` (not ``filters/<layer>``, which holds
  the grid images), so W&B shows the animations next to the grids.

  Returns:
    the GIF paths written.
  """
  base = os.path.join(workdir, FILTERS_DIR)
  gifs = images.write_animations(workdir)
  for gif in gifs:
    layer = os.path.relpath(gif, base)[: -len(images.GIF_SUFFIX)].replace(os.sep, "/")
    logger.log_video(step, f"{ANIMATION_KEY}/{layer}", gif)
  return gifs


def wrap(values: np.ndarray, period: float) -> np.ndarray:
  """``values`` wrapped to ``[-period/2, period/2)``."""
  return np.mod(values + period / 2, period) - period / 2


def learned_parameters(module: km.GaborKernel) -> tuple[str, ...]:
  """The Gabor parameters ``module`` learns (``nnx.Param``); the others are fixed."""
  return tuple(n for n in GABOR_PARAMETERS if isinstance(getattr(module, n), nnx.Param))


def grid_groups(groups: list[KernelGroup]) -> list[images.GridGroup]:
  """The legend of a layer's grid: one entry per kernel source, by kind."""
  return [images.GridGroup(g.kind, g.start, g.stop) for g in groups]


def change_caption(change: np.ndarray, initial: np.ndarray, since: int) -> list[str]:
  """The scale of a change grid, in words: how far its brightest tile moved."""
  largest = float(np.max(np.abs(change)))
  reference = float(np.max(np.abs(initial)))
  share = f" ({100 * largest / reference:.3g}% of the largest initial weight)" if reference else ""
  return [
    f"change since step {since}, one scale for all tiles:",
    f"white/black = +/-{largest:.3g}{share}",
  ]


def gabor_values(module: km.GaborKernel) -> dict[str, np.ndarray]:
  """Constrained parameters as host float64, theta in [0, pi), psi in [-pi, pi)."""
  values = {k: np.asarray(v, np.float64) for k, v in module.parameters().items()}
  values["theta"] = np.mod(values["theta"], np.pi)
  values["psi"] = wrap(values["psi"], 2 * np.pi)
  return values


def drift(
  values: Mapping[str, np.ndarray], initial: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
  """Per-filter change since ``initial``: wrapped differences, relative for positive params."""
  changes = {}
  for name in GABOR_PARAMETERS:
    if name in _RELATIVE:
      changes[name] = values[name] / initial[name] - 1.0
    else:
      changes[name] = wrap(values[name] - initial[name], np.pi if name == "theta" else 2 * np.pi)
  return changes


def _gabor_table(values, changes, start: int) -> tuple[list[str], list[list[Any]]]:
  columns = ["filter", "input"] + list(GABOR_PARAMETERS) + [f"d_{n}" for n in GABOR_PARAMETERS]
  shape = values["theta"].shape  # (cin, cout) in 'pair' mode, (cout,) in 'mix' mode
  rows = []
  for index in np.ndindex(shape):
    inp, out = index if len(shape) == 2 else (-1, index[0])
    rows.append(
      [start + out, inp]
      + [float(values[n][index]) for n in GABOR_PARAMETERS]
      + [float(changes[n][index]) for n in GABOR_PARAMETERS]
    )
  return columns, rows


class FilterTracker:
  """Computes and logs filter summaries; see the module docstring for the keys.

  Args:
    logger: where the summaries go.
    gabor_fit: fit Gabors to free kernels (the Gabor-likeness score).
    min_fit_size: smallest kernel side that is fitted.
    max_filters: at most this many filters per grid image.
    fit_options: passed to :func:`hybridconv.analysis.gabor_fit.fit_gabor`.
    state_path: optional ``.npz`` file keeping the initial Gabor parameters
      across restarts (e.g. ``<workdir>/filters/initial_gabor_parameters.npz``);
      the initial kernels go to ``initial_kernels.npz`` in the same folder.
    null_draws: phase-randomised copies per free filter scored for the null
      band of the Gabor fit (0 = no null band).
  """

  def __init__(
    self,
    logger: logger_lib.Logger,
    *,
    gabor_fit: bool = True,
    min_fit_size: int = 5,
    max_filters: int = 256,
    fit_options: Mapping[str, Any] | None = None,
    state_path: str | None = None,
    null_draws: int = 1,
  ):
    self.logger = logger
    self.null_draws = null_draws
    self.gabor_fit = gabor_fit
    self.min_fit_size = min_fit_size
    self.max_filters = max_filters
    self.fit_options = dict(fit_options or {})
    self.state_path = state_path
    self.initial: dict[str, dict[str, np.ndarray]] = {}
    self.initial_kernels: dict[str, tuple[int, np.ndarray]] = {}  # layer: (step, kernel)
    if state_path and os.path.exists(state_path):
      with np.load(state_path) as saved:
        for key in saved.files:
          group, name = key.rsplit(":", 1)
          self.initial.setdefault(group, {})[name] = saved[key]
    if self._kernels_path and os.path.exists(self._kernels_path):
      with np.load(self._kernels_path) as saved:
        for key in saved.files:
          step, layer = key.split(":", 1)
          self.initial_kernels[layer] = (int(step), saved[key])

  @property
  def _kernels_path(self) -> str | None:
    if not self.state_path:
      return None
    return os.path.join(os.path.dirname(os.path.abspath(self.state_path)), INITIAL_KERNELS_FILE)

  def _save_initial(self) -> None:
    if not self.state_path:
      return
    os.makedirs(os.path.dirname(os.path.abspath(self.state_path)), exist_ok=True)
    np.savez(
      self.state_path,
      **{f"{g}:{n}": v for g, params in self.initial.items() for n, v in params.items()},
    )

  def _save_initial_kernels(self) -> None:
    if self._kernels_path:
      os.makedirs(os.path.dirname(self._kernels_path), exist_ok=True)
      np.savez(
        self._kernels_path,
        **{f"{step}:{layer}": kernel for layer, (step, kernel) in self.initial_kernels.items()},
      )

  def __call__(self, model: nnx.Module, step: int) -> dict[str, float]:
    """Logs the summaries of every conv layer of ``model`` at ``step``; returns the scalars."""
    step = int(step)
    scalars: dict[str, float] = {}
    histograms: dict[str, Any] = {}
    pictures: dict[str, np.ndarray] = {}
    added_initial = added_kernels = False
    for name, layer in conv_layers(model).items():
      kernel = logger_lib.to_host(layer.kernel()).astype(np.float32)
      groups = kernel_groups(layer)
      if min(kernel.shape[:2]) >= 2:
        legend = grid_groups(groups)
        pictures[f"filters/{name}"] = images.kernel_grid(
          kernel,
          max_filters=self.max_filters,
          groups=legend,
          caption=images.filter_caption(kernel, step),
        )
        self._spectra(name, kernel, scalars, histograms)
        if any(g.kind != "frozen" for g in groups):
          added_kernels |= self._change_grid(step, name, kernel, legend, pictures)
      gabors = [g for g in groups if g.kind == "gabor"]
      for group in gabors:
        label = name if len(gabors) == 1 else f"{name}/{group.path}"
        added_initial |= self._gabor_parameters(step, label, group, scalars, histograms)
      free = np.concatenate(
        [np.arange(g.start, g.stop) for g in groups if g.kind == "free"] or [np.zeros(0, int)]
      )
      if self.gabor_fit and free.size and min(kernel.shape[:2]) >= self.min_fit_size:
        self._gabor_fit(step, name, kernel[..., free], free, scalars, histograms)
    if added_initial:
      self._save_initial()
    if added_kernels:
      self._save_initial_kernels()
    if pictures:
      self.logger.log_images(step, pictures)
    if histograms:
      self.logger.log_histograms(step, histograms)
    if scalars:
      self.logger.log_scalars(step, scalars)
    return scalars

  def _spectra(self, name: str, kernel: np.ndarray, scalars, histograms) -> None:
    tiles = images.spatial_kernels(kernel)
    spatial = tiles.reshape(tiles.shape[:2] + (-1,))  # RGB: each colour plane counts
    orientation = np.asarray(filter_stats.orientation_energy(spatial, ORIENTATION_BINS))
    width = 180.0 / ORIENTATION_BINS
    edges = np.arange(ORIENTATION_BINS + 1) * width - width / 2
    histograms[f"filters/{name}/orientation_energy"] = logger_lib.Histogram(
      orientation.mean(axis=-1), edges
    )
    band_edges = np.array((0.0, 0.0625, 0.125, 0.25, 0.5, 0.75))
    frequency = np.asarray(filter_stats.frequency_energy(spatial, tuple(band_edges)))
    histograms[f"filters/{name}/frequency_energy"] = logger_lib.Histogram(
      frequency.mean(axis=-1), band_edges
    )
    scalars[f"filters/{name}/orientation_selectivity"] = float(
      np.mean(filter_stats.orientation_selectivity(spatial))
    )

  def _change_grid(self, step: int, name: str, kernel: np.ndarray, legend, pictures) -> bool:
    """Adds ``filters_change/<name>`` after the first summary; True if a new reference."""
    if name not in self.initial_kernels or self.initial_kernels[name][1].shape != kernel.shape:
      self.initial_kernels[name] = (step, kernel.copy())
      return True
    since, initial = self.initial_kernels[name]
    if step != since:
      change = kernel - initial
      pictures[f"filters_change/{name}"] = images.kernel_grid(
        change,
        max_filters=self.max_filters,
        groups=legend,
        shared_scale=True,
        caption=change_caption(change, initial, since),
      )
    return False

  def _gabor_parameters(
    self, step: int, label: str, group: KernelGroup, scalars, histograms
  ) -> bool:
    values = gabor_values(group.module)
    added = label not in self.initial
    if added:
      self.initial[label] = {k: v.copy() for k, v in values.items()}
    changes = drift(values, self.initial[label])
    learned = learned_parameters(group.module)
    for param in GABOR_PARAMETERS:
      if param in learned:
        histograms[f"gabor/{label}/{param}"] = values[param]
        scalars[f"gabor/{label}/drift/{param}"] = float(np.mean(np.abs(changes[param])))
      else:
        histograms[f"gabor/{label}/fixed/{param}"] = values[param]
    columns, rows = _gabor_table(values, changes, group.start)
    self.logger.log_table(step, f"gabor/{label}", columns, rows)
    return added

  def _gabor_fit(
    self, step: int, name: str, kernel: np.ndarray, channels: np.ndarray, scalars, histograms
  ) -> None:
    result = gabor_fit.fit_conv_kernel(kernel, "dominant", **self.fit_options)
    r2 = np.asarray(result.r2_filter, np.float64)
    # The analysis layer's summary (R^2 quantiles, blobs and edges counted apart, ...).
    for key, value in gabor_fit.fit_summary(result, kernel, "dominant").items():
      scalars[f"gabor_fit/{name}/{key}"] = value
    if self.null_draws:
      # Same fitter, same settings, surrogates of these very filters: a key
      # per step, so the band is reproducible and not the same draw each time.
      null = gabor_null.null_scores(
        kernel,
        jax.random.fold_in(jax.random.key(0), step),
        self.null_draws,
        "dominant",
        **self.fit_options,
      )
      for key, value in gabor_null.null_summary(null).items():
        scalars[f"gabor_fit/{name}/{key}"] = value
    histograms[f"gabor_fit/{name}/r2"] = r2
    fit = {k: np.asarray(v, np.float64) for k, v in result.fit._asdict().items()}
    scalars[f"gabor_fit/{name}/spatial_r2_mean"] = float(np.mean(fit["r2"]))
    energy = (
      np.asarray(result.colour_energy) if result.colour_energy is not None else np.ones_like(r2)
    )
    columns = ["filter", "r2", "spatial_r2", "colour_energy"] + list(GABOR_PARAMETERS)
    rows = [
      [int(c), float(r2[i]), float(fit["r2"][i]), float(energy[i])]
      + [float(fit[p][i]) for p in GABOR_PARAMETERS]
      for i, c in enumerate(channels)
    ]
    self.logger.log_table(step, f"gabor_fit/{name}", columns, rows)
