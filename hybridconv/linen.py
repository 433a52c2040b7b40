"""hybridconv layers for Flax Linen models, with Linen's own conv signature.

:class:`KernelConv` takes ``linen.Conv``'s arguments (``features``,
``kernel_size``, ``strides``, ``padding``, ``kernel_dilation``,
``feature_group_count``, ``use_bias``, ``dtype``, ``param_dtype``,
``precision``) plus a kernel ``source``, and runs
:class:`hybridconv.nn.KernelConv` through ``nnx.bridge`` -- one conv code path
for both APIs (design: NNX is the module API, the bridge serves Linen). The
input channel count is read from the input, as in Linen.

Variables land where Linen users expect them: learned kernels, parametric
Gabor parameters and biases in ``params``; fixed banks, random kernels and
frozen Gabor parameters in a ``FrozenKernel`` collection, outside ``params``,
so an optimiser over ``params`` never touches them while checkpoints of the
whole variable dict keep them.

:func:`conv` is a drop-in ``conv: ModuleDef`` for models written in the
Flax-examples style (``ResNet(..., conv=conv('gabor'))``); given a mapping it
picks each layer's source by the layer's Linen path, e.g.
``conv({'conv_init': 'gabor'})`` for a Gabor stem and free convs elsewhere.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
from flax import linen, nnx
from flax.core import FrozenDict

from hybridconv import nn
from hybridconv.nn import spec_keys

Padding = str | int | Sequence[int] | Sequence[tuple[int, int]]


class KernelConv(linen.Module):
  """``linen.Conv``'s signature over :class:`hybridconv.nn.KernelConv`.

  Attributes:
    features: output channels.
    kernel_size: ``(kh, kw)``, or ``k`` for ``(k, k)`` (2-D convs only; an
      int is not a 1-D conv here, unlike ``linen.Conv``).
    strides, padding, kernel_dilation, feature_group_count, use_bias, dtype,
      param_dtype, precision: as in ``linen.Conv`` (padding: 'SAME', 'VALID',
      'CIRCULAR', 'REFLECT', an int or ``((lo, hi), (lo, hi))``).
    source: a kernel source (``'gabor'``, ``'fixed:dct'``, a
      :mod:`hybridconv.nn.sources` object, ...), or a mapping from this
      layer's Linen path ('/'-joined, e.g. ``'conv_init'`` or
      ``'ResNetBlock_0/*'``; exact path, else the longest matching glob) to
      sources; layers the mapping does not name are free.
  """

  features: int
  kernel_size: int | Sequence[int]
  strides: int | Sequence[int] | None = 1
  padding: Padding = "SAME"
  kernel_dilation: int | Sequence[int] | None = 1
  feature_group_count: int = 1
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None
  source: Any = "free"

  def layer_source(self) -> Any:
    """This layer's source: ``source``, or its entry in a ``source`` mapping."""
    if not isinstance(self.source, Mapping):
      return self.source
    path = "/".join(self.scope.path)
    key = spec_keys.match_key(path, self.source, what="linen conv source")
    return "free" if key is None else self.source[key]

  @linen.compact
  def __call__(self, x):
    if isinstance(self.padding, Sequence) and not isinstance(self.padding, str):
      padding = tuple(p if isinstance(p, int) else tuple(p) for p in self.padding)
    else:
      padding = self.padding
    layer = nnx.bridge.to_linen(
      nn.KernelConv,
      x.shape[-1],
      self.features,
      self.kernel_size,
      source=self.layer_source(),
      strides=self.strides or 1,
      padding=padding,
      kernel_dilation=self.kernel_dilation or 1,
      feature_group_count=self.feature_group_count,
      use_bias=self.use_bias,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      precision=self.precision,
      name="conv",
    )
    return layer(x)


def conv(source: Any = "free", **defaults: Any) -> functools.partial:
  """A ``conv: ModuleDef`` for Flax-examples-style models: :class:`KernelConv` with ``source``.

  Args:
    source: a kernel source for every conv, or ``{linen path or glob:
      source}`` (unnamed layers stay free).
    **defaults: further :class:`KernelConv` fields, as ``functools.partial``.
  """
  if isinstance(source, Mapping):
    source = FrozenDict(source)  # Linen module fields must be hashable
  return functools.partial(KernelConv, source=source, **defaults)


__all__ = ["KernelConv", "conv"]
