"""Convert the convolutions of any Flax NNX model: ``hybridconv.nn.convert(model, spec)``.

Researchers want new kernels in the model they already have (their own CNN, a
Flax-examples ResNet), not a rewrite around :class:`KernelConv`. ``convert``
walks any ``flax.nnx`` module tree and swaps each matching ``nnx.Conv`` for a
:class:`KernelConv` with the same shape, strides, padding, dilation, feature
groups, bias and dtypes. What the new layer starts from depends on its source:

* ``free`` keeps the conv's weights (``Free(init=weights)``): outputs are
  bit-identical;
* ``gabor`` fits the parametric Gabor layer to the conv's current kernels
  (``Gabor(init_from=weights)``, :mod:`hybridconv.nn.gabor_init`), so a trained
  free layer becomes a parametric one that starts as close as the family allows;
* ``fixed`` / ``random`` (and ``free:init=<bank>``) replace the kernels as a
  newly built layer would;
* ``hybrid`` does the above per channel group, on that group's slice of kernels.

The bias (not a kernel) is always kept.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx
from flax.nnx.nn import dtypes

from hybridconv.nn import sources, spec_keys
from hybridconv.nn.conv import KernelConv
from hybridconv.nn.layer_rngs import layer_rngs


@dataclasses.dataclass(frozen=True)
class Replacement:
  """One converted conv layer.

  Attributes:
    path: the layer's attribute path joined by '_' (``blocks_0_conv``), the
      names ``spec`` keys match, as for ``model.kernels``.
    kernel_shape: the old (and new) HWIO kernel shape.
    source: the spec's source for this layer, as parsed.
    r2: ``(cout,)`` R^2 of each new filter's starting kernel against the old
      one (1 = identical), where the source starts from the old kernels (free,
      gabor, hybrid groups of them); None for kernels replaced outright.
    poorly_fitted: one line per filter whose start is far from the old kernel
      (R^2 below :data:`POOR_FIT_R2`), with the likely cause; ``convert`` also
      warns with them (``warnings.warn``), so a lossy conversion is never silent.
  """

  path: str
  kernel_shape: tuple[int, ...]
  source: sources.KernelSource
  r2: np.ndarray | None
  poorly_fitted: tuple[str, ...] = ()

  def summary(self) -> dict[str, float]:
    """Scalars for a logger: mean, median and minimum R^2 (empty when r2 is None)."""
    if self.r2 is None:
      return {}
    return {
      "r2_mean": float(np.mean(self.r2)),
      "r2_median": float(np.median(self.r2)),
      "r2_min": float(np.min(self.r2)),
    }


def _name(path: tuple) -> str:
  return "_".join(map(str, path))


def find_convs(model: nnx.Module) -> dict[str, tuple[tuple, nnx.Conv]]:
  """Every ``nnx.Conv`` of ``model`` by '_'-joined path: ``{name: (path, conv)}``."""
  return {
    _name(path): (path, node) for path, node in nnx.iter_graph(model) if isinstance(node, nnx.Conv)
  }


def _uncarried_options(conv: nnx.Conv) -> list[str]:
  """``nnx.Conv`` settings that :class:`KernelConv` cannot reproduce."""
  problems = []
  if len(conv.kernel_size) != 2:
    problems.append(f"kernel_size={conv.kernel_size} (only 2-D convs convert)")
  if conv.input_dilation not in (None, 1, (1, 1), [1, 1]):
    problems.append(f"input_dilation={conv.input_dilation} (only 1)")
  if conv.mask is not None:
    problems.append("mask (only None)")
  if isinstance(conv.padding, str) and conv.padding.upper() == "CAUSAL":
    problems.append("padding='CAUSAL'")
  if conv.conv_general_dilated is not jax.lax.conv_general_dilated:
    problems.append("a custom conv_general_dilated")
  if conv.promote_dtype is not dtypes.promote_dtype:
    problems.append("a custom promote_dtype")
  if conv.preferred_element_type is not None:
    problems.append(f"preferred_element_type={conv.preferred_element_type}")
  return problems


def _carry(source: sources.KernelSource, kernel: np.ndarray) -> sources.KernelSource:
  """``source`` made to start from ``kernel`` where it learns from a start."""
  if isinstance(source, sources.Free) and source.init is None:
    return sources.Free(init=kernel)
  if isinstance(source, sources.Gabor) and source.init_from is None:
    return dataclasses.replace(source, init_from=kernel)
  if isinstance(source, sources.Hybrid):
    edges = np.cumsum([0, *source.counts(kernel.shape[-1])])
    return sources.Hybrid(
      tuple(
        (_carry(group, kernel[..., a:b]), size)
        for (group, size), a, b in zip(source.groups, edges[:-1], edges[1:], strict=True)
      )
    )
  return source


def _starts_from_old(source: sources.KernelSource) -> bool:
  if isinstance(source, sources.Hybrid):
    return any(_starts_from_old(group) for group, _ in source.groups)
  return (isinstance(source, sources.Free) and source.init is None) or (
    isinstance(source, sources.Gabor) and source.init_from is None
  )


POOR_FIT_R2 = 0.9  # a started filter below this R^2 against its old kernel is named
# A filter whose mean holds this share of its energy loses it to a zero-mean source.
MEAN_ENERGY_SHARE = 0.05


def poor_fits(name: str, source, old: jax.Array, r2: np.ndarray) -> tuple[str, ...]:
  """A line per filter of layer ``name`` whose R^2 is below :data:`POOR_FIT_R2`, with the cause.

  A zero-mean Gabor source cannot hold a filter's mean (its DC component): where the
  mean carries a visible share of the filter's energy, that is named with the cure
  (``zero_mean=False``); otherwise the kernel is not one the source can represent.
  """
  old = np.asarray(old, np.float64)
  flat = old.reshape(-1, old.shape[-1])
  mean_share = flat.shape[0] * flat.mean(axis=0) ** 2 / np.maximum(np.sum(flat**2, axis=0), 1e-30)
  zero_mean = isinstance(source, sources.Gabor) and source.zero_mean
  lines = []
  for index in np.flatnonzero(r2 < POOR_FIT_R2):
    if zero_mean and mean_share[index] >= MEAN_ENERGY_SHARE:
      cause = (
        f"its mean holds {100 * mean_share[index]:.0f}% of its energy and the Gabor source is "
        "zero-mean; keep it with {'source': 'gabor', 'zero_mean': False}"
      )
    else:
      cause = f"the kernel is not one a {type(source).__name__} source can represent"
    lines.append(f"{name} filter {index}: R^2 {r2[index]:.3f} against the old kernel: {cause}")
  return tuple(lines)


def filter_r2(new: jax.Array, old: jax.Array) -> np.ndarray:
  """R^2 per output filter of ``new`` against ``old`` (HWIO); 0 for a constant old filter."""
  old, new = np.asarray(old, np.float64), np.asarray(new, np.float64)
  sse = np.sum((old - new) ** 2, axis=(0, 1, 2))
  sst = np.sum((old - old.mean(axis=(0, 1), keepdims=True)) ** 2, axis=(0, 1, 2))
  return np.where(sst > 0, 1 - sse / np.where(sst > 0, sst, 1), 0.0)


def _replacement_layer(
  name: str, conv: nnx.Conv, source: sources.KernelSource, rngs: nnx.Rngs
) -> KernelConv:
  problems = _uncarried_options(conv)
  if problems:
    raise ValueError(f"conv {name!r} cannot be converted: {', '.join(problems)}")
  kernel = np.asarray(conv.kernel[...], np.float32)
  try:
    layer = KernelConv(
      conv.in_features,
      conv.out_features,
      conv.kernel_size,
      source=_carry(source, kernel),
      strides=conv.strides or 1,
      padding=conv.padding,
      kernel_dilation=conv.kernel_dilation or 1,
      feature_group_count=conv.feature_group_count,
      use_bias=conv.bias is not None,
      dtype=conv.dtype,
      param_dtype=conv.param_dtype,
      precision=conv.precision,
      rngs=rngs,
    )
  except ValueError as error:
    raise ValueError(f"conv {name!r} (kernel {kernel.shape}): {error}") from error
  if conv.bias is not None:
    layer.bias[...] = conv.bias[...]
  return layer


def convert(
  model: nnx.Module, spec: Mapping[str, Any], *, rngs: nnx.Rngs | None = None
) -> tuple[nnx.Module, list[Replacement]]:
  """Replaces ``model``'s matching ``nnx.Conv`` layers by :class:`KernelConv` layers.

  Every new layer is built (and every Gabor fit run) before the model is
  touched, so an error leaves the model as it was; then the layers are swapped
  in place (NNX modules are mutable) and the same model is returned.

  Args:
    model: any ``flax.nnx`` module tree.
    spec: ``{path or glob: kernel source}``; a path is the attribute path joined
      by '_' (``conv1``, ``blocks_0_conv``; see :func:`find_convs`); the exact
      path wins over the longest matching glob (``'*'`` = every conv). Sources
      as in :func:`hybridconv.nn.sources.parse` (``'gabor'``, ``'fixed:dct'``,
      ``{'source': 'gabor', 'gain': True}``, ...).
    rngs: random streams for sources that draw (default ``nnx.Rngs(0)``); each
      converted conv draws from streams of its own, derived from ``rngs`` and its
      name (:func:`hybridconv.nn.layer_rngs.layer_rngs`), so which other convs
      are converted, and to what, never changes its initial values.

  Returns:
    ``(model, replacements)``: the converted model and one :class:`Replacement`
    per converted conv, in the model's graph order.

  Raises:
    ValueError: a key that matches no ``nnx.Conv``, an invalid source, a
      BankMix source, or a conv setting a KernelConv cannot carry over (1-D/3-D
      convs, input dilation, masks, custom conv functions).
  """
  rngs = nnx.Rngs(0) if rngs is None else rngs
  convs = find_convs(model)
  spec = dict(spec)
  unknown = spec_keys.unmatched_keys(spec, convs)
  if unknown:
    raise ValueError(
      f"convert spec key(s) {unknown} match no nnx.Conv of {type(model).__name__}; "
      f"its convs are {sorted(convs)} (or use a glob pattern such as '*')"
    )
  planned = []
  for name, (path, conv) in convs.items():
    key = spec_keys.match_key(name, spec, what="convert spec")
    if key is None:
      continue
    try:
      source = sources.parse(spec[key])
    except ValueError as error:
      raise ValueError(f"convert spec[{key!r}]={spec[key]!r}: {error}") from error
    if isinstance(source, sources.BankMix):
      raise ValueError(
        f"convert spec[{key!r}]: a BankMix source changes the layer structure; "
        "convert replaces kernels (free, gabor, fixed, random, hybrid)"
      )
    # Streams of the conv's own: its new values depend only on ``rngs`` and its name.
    layer = _replacement_layer(name, conv, source, layer_rngs(rngs, name))
    r2 = filter_r2(layer.kernel(), conv.kernel[...]) if _starts_from_old(source) else None
    poor = poor_fits(name, source, conv.kernel[...], r2) if r2 is not None else ()
    if poor:
      lines = "\n  ".join(poor)
      warnings.warn(
        f"convert: {len(poor)} of {len(r2)} filters start far from their old kernels:\n  {lines}",
        stacklevel=2,
      )
    replacement = Replacement(name, tuple(conv.kernel.shape), source, r2, poor)
    planned.append((path, layer, replacement))
  for path, layer, _ in planned:
    _set(model, path, layer)
  return model, [replacement for _, _, replacement in planned]


def _set(model: nnx.Module, path: tuple, layer: nnx.Module) -> None:
  """Puts ``layer`` at ``path``: an attribute, or an item of an nnx.List / nnx.Dict."""
  parent = model
  for key in path[:-1]:
    parent = (
      parent[key] if isinstance(key, int) or not hasattr(parent, str(key)) else getattr(parent, key)
    )
  key = path[-1]
  if isinstance(key, int) or not hasattr(parent, str(key)):
    parent[key] = layer
  else:
    setattr(parent, key, layer)


__all__ = ["Replacement", "convert", "filter_r2", "find_convs", "poor_fits"]
