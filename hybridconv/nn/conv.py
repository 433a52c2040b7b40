"""Convolution layers whose kernels come from a kernel source.

:class:`KernelConv` is the one conv code path: it asks its kernel module for
the current HWIO kernel and makes a single ``lax.conv_general_dilated`` call,
with ``nnx.Conv``'s argument names and numerics (a ``Free`` source reproduces
``nnx.Conv`` exactly). :class:`BankMixConv` is the bank-then-mix structure:
a bank per input channel, optional norm and activation, then a learned 1x1
mix. :func:`conv_layer` builds either from a source, so models take one spec
per layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes
from jax import Array

from hybridconv.kernels import banks
from hybridconv.kernels import gabor as gabor_kernels
from hybridconv.nn import kernel_modules, sources

PADDING_MODES = ("SAME", "VALID", "CIRCULAR", "REFLECT")

Padding = str | int | Sequence[int] | Sequence[tuple[int, int]]


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
  pair = (value, value) if isinstance(value, int) else tuple(value)
  if len(pair) != 2 or any(not isinstance(v, int) or v < 1 for v in pair):
    raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
  return pair


def _check_padding(padding: Padding) -> Padding:
  if isinstance(padding, str):
    if padding.upper() not in PADDING_MODES:
      raise ValueError(
        f"padding={padding!r} is not one of {PADDING_MODES}, an int or ((lo, hi), (lo, hi))"
      )
    return padding.upper()
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  pads = tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)
  if len(pads) != 2 or any(len(p) != 2 for p in pads):
    raise ValueError(f"padding={padding!r} must be a mode, an int or two (lo, hi) pairs")
  return pads


def convolve(
  x: Array,
  kernel: Array,
  *,
  strides,
  padding: Padding,
  kernel_dilation,
  feature_group_count: int = 1,
  precision=None,
) -> Array:
  """NHWC x HWIO cross-correlation with ``nnx.Conv``'s padding modes."""
  if padding in ("CIRCULAR", "REFLECT"):
    kh, kw = ((k - 1) * d + 1 for k, d in zip(kernel.shape[:2], kernel_dilation, strict=True))
    pads = [(0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)]
    x = jnp.pad(x, pads, mode={"CIRCULAR": "wrap", "REFLECT": "reflect"}[padding])
    padding = "VALID"
  # The barrier makes XLA keep the conv input as one buffer. Without it, XLA:CPU
  # fuses the elementwise chain that produced x (BatchNorm, ReLU, residual adds)
  # into the transpose that the weight gradient needs, once per consumer: in
  # ResNet-20 every block recomputed its whole stage's residual stream, and the
  # train step ran at 344 instead of 455 img/s (train_throughput.py, same run).
  x = jax.lax.optimization_barrier(x)
  return jax.lax.conv_general_dilated(
    x,
    kernel,
    window_strides=strides,
    padding=padding,
    rhs_dilation=kernel_dilation,
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=feature_group_count,
    precision=precision,
  )


class KernelConv(nnx.Module):
  """2-D convolution (NHWC) whose kernel comes from a kernel source.

  Args:
    in_features: input channels.
    out_features: output channels.
    kernel_size: ``k`` or ``(kh, kw)``, >= 1.
    source: a :mod:`hybridconv.nn.sources` object, string or dict
      ('free', 'gabor', 'fixed:sobel_x', 'random', 'hybrid', ...).
    strides, padding, kernel_dilation, feature_group_count, use_bias, dtype,
      param_dtype, precision: as in ``nnx.Conv`` (with ``feature_group_count=g``
      the kernel is ``(kh, kw, in_features // g, out_features)``); ``dtype`` is
      the compute dtype (e.g. ``jnp.bfloat16``), kernels are generated in
      ``param_dtype`` and cast.
    rngs: NNX random streams (``params`` is used).

  Raises:
    ValueError: at construction, for a bad size, source, bank or group split.
  """

  def __init__(
    self,
    in_features: int,
    out_features: int,
    kernel_size: int | Sequence[int],
    *,
    source: sources.KernelSource | str | dict = sources.Free(),
    strides: int | Sequence[int] = 1,
    padding: Padding = "SAME",
    kernel_dilation: int | Sequence[int] = 1,
    feature_group_count: int = 1,
    use_bias: bool = True,
    dtype=None,
    param_dtype=jnp.float32,
    precision=None,
    rngs: nnx.Rngs,
  ):
    for name, value in (
      ("in_features", in_features),
      ("out_features", out_features),
      ("feature_group_count", feature_group_count),
    ):
      if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    if in_features % feature_group_count or out_features % feature_group_count:
      raise ValueError(
        f"feature_group_count={feature_group_count} must divide in_features="
        f"{in_features} and out_features={out_features}"
      )
    kh, kw = gabor_kernels.kernel_size_2d(kernel_size)
    source = sources.parse(source)
    if isinstance(source, sources.BankMix):
      raise ValueError("a BankMix source builds a BankMixConv layer; use hybridconv.nn.conv_layer")
    self.in_features, self.out_features = in_features, out_features
    self.kernel_size = (kh, kw)
    self.strides = _pair(strides, "strides")
    self.kernel_dilation = _pair(kernel_dilation, "kernel_dilation")
    self.padding = _check_padding(padding)
    self.feature_group_count = feature_group_count
    self.dtype, self.param_dtype, self.precision = dtype, param_dtype, precision
    self.source_name = type(source).__name__.lower()
    # Kernel first, then bias: the same order of key draws as nnx.Conv.
    self.kernel_source = kernel_modules.build_kernel_module(
      source,
      (kh, kw, in_features // feature_group_count, out_features),
      param_dtype=param_dtype,
      rngs=rngs,
    )
    self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype)) if use_bias else nnx.data(None)
    if use_bias:
      rngs.params()  # nnx.Conv draws (and ignores) a key for its zero bias init.

  def kernel(self) -> Array:
    """The current kernel, HWIO ``(kh, kw, in_features // groups, out_features)``, for logging."""
    return self.kernel_source()

  def __call__(self, x: Array) -> Array:
    if x.ndim != 4 or x.shape[-1] != self.in_features:
      raise ValueError(
        f"KernelConv expects NHWC input with {self.in_features} channels, got shape {x.shape}"
      )
    kernel = self.kernel_source()
    bias = self.bias[...] if self.bias is not None else None
    x, kernel, bias = dtypes.promote_dtype((x, kernel, bias), dtype=self.dtype)
    y = convolve(
      x,
      kernel,
      strides=self.strides,
      padding=self.padding,
      kernel_dilation=self.kernel_dilation,
      feature_group_count=self.feature_group_count,
      precision=self.precision,
    )
    return y + bias if bias is not None else y


class BankMixConv(nnx.Module):
  """A bank applied to each input channel, optional norm/activation, learned 1x1 mix.

  The depthwise bank (fixed, or parametric Gabor shared across input channels)
  gives ``in_features * bank_size`` responses; a learned 1x1 convolution mixes
  them into ``out_features`` channels. ``kernel()`` returns the bank (HWIO with
  one input channel), which is what filter logging shows.
  """

  def __init__(
    self,
    in_features: int,
    out_features: int,
    kernel_size: int | Sequence[int],
    *,
    source: sources.BankMix | str | dict = sources.BankMix(),
    strides: int | Sequence[int] = 1,
    padding: Padding = "SAME",
    kernel_dilation: int | Sequence[int] = 1,
    use_bias: bool = True,
    dtype=None,
    param_dtype=jnp.float32,
    precision=None,
    rngs: nnx.Rngs,
  ):
    source = sources.parse(source)
    if not isinstance(source, sources.BankMix):
      raise ValueError(f"BankMixConv needs a BankMix source, got {source!r}")
    kh, kw = gabor_kernels.kernel_size_2d(kernel_size)
    if isinstance(source.bank, sources.Fixed):
      bank_size = banks.bank_size(source.bank.bank, (kh, kw), **dict(source.bank.options))
    else:
      bank_size = source.num_filters
    self.in_features, self.out_features, self.bank_size = in_features, out_features, bank_size
    self.kernel_size = (kh, kw)
    self.strides = _pair(strides, "strides")
    self.kernel_dilation = _pair(kernel_dilation, "kernel_dilation")
    self.padding = _check_padding(padding)
    self.dtype, self.precision = dtype, precision
    self.bank = kernel_modules.build_kernel_module(
      source.bank, (kh, kw, 1, bank_size), param_dtype=param_dtype, rngs=rngs
    )
    responses = in_features * bank_size
    self.norm = (
      nnx.BatchNorm(responses, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
      if source.norm == "batch"
      else nnx.data(None)
    )
    self.activation = source.activation
    self.mix = nnx.Conv(
      responses,
      out_features,
      (1, 1),
      use_bias=use_bias,
      dtype=dtype,
      param_dtype=param_dtype,
      precision=precision,
      rngs=rngs,
    )

  def kernel(self) -> Array:
    """The bank, HWIO ``(kh, kw, 1, bank_size)``."""
    return self.bank()

  def effective_kernel(self) -> Array | None:
    """The one HWIO kernel ``(kh, kw, in, out)`` this layer equals, when it is linear.

    With no norm and no activation between bank and mix, output ``o`` is
    ``sum_c sum_j mix[c * bank_size + j, o] * (bank_j * x_c)``: a convolution with
    kernel ``sum_j mix[c * bank_size + j, o] * bank_j`` (plus the mix's bias). These
    are the filters the layer applies, and what a study shows of it. None otherwise.
    """
    if self.norm is not None or self.activation != "none":
      return None
    bank = self.bank()[:, :, 0, :]  # (kh, kw, bank_size)
    mix = self.mix.kernel[...][0, 0].reshape(self.in_features, self.bank_size, self.out_features)
    return jnp.einsum("hwn,cno->hwco", bank, mix)

  def __call__(self, x: Array) -> Array:
    bank = jnp.tile(self.bank(), (1, 1, 1, self.in_features))  # one copy per input channel
    x, bank = dtypes.promote_dtype((x, bank), dtype=self.dtype)
    # Depthwise: output channel c * bank_size + j is bank filter j on input c.
    y = convolve(
      x,
      bank,
      strides=self.strides,
      padding=self.padding,
      kernel_dilation=self.kernel_dilation,
      feature_group_count=self.in_features,
      precision=self.precision,
    )
    if self.norm is not None:
      y = self.norm(y)
    if self.activation == "relu":
      y = jax.nn.relu(y)
    elif self.activation == "abs":
      y = jnp.abs(y)
    return self.mix(y)


def conv_layer(
  in_features: int,
  out_features: int,
  kernel_size: int | Sequence[int],
  *,
  source: sources.KernelSource | str | dict = sources.Free(),
  **kwargs,
) -> KernelConv | BankMixConv:
  """A :class:`KernelConv`, or a :class:`BankMixConv` for a BankMix source."""
  source = sources.parse(source)
  layer = BankMixConv if isinstance(source, sources.BankMix) else KernelConv
  return layer(in_features, out_features, kernel_size, source=source, **kwargs)
