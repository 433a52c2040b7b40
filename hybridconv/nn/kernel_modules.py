"""NNX modules that produce an HWIO kernel from a kernel source.

Each module is called with no arguments and returns the layer's current
kernel of shape ``(kh, kw, cin, cout)`` in ``param_dtype``; the conv layer
then makes a single ``lax.conv_general_dilated`` call with it. Learned values
are ``nnx.Param``; fixed kernels, random kernels and the non-learned Gabor
parameters are :class:`FrozenKernel`, a separate variable type, so an
optimiser built with ``wrt=nnx.Param`` never touches them while checkpoints
still save them.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from flax import nnx
from jax import Array

from hybridconv.kernels import banks, constraints, gabor, init, random_kernels
from hybridconv.nn import gabor_init, sources

# Same initialiser as nnx.Conv, so a 'free' layer reproduces it exactly.
_free_kernel_init = nnx.initializers.lecun_normal()

# Keep initial raw values away from the sigmoid's flat tails, where learning
# would stall (the learned value could barely move from its initialisation).
_INIT_MARGIN = 0.05


class FrozenKernel(nnx.Variable):
  """A kernel value that is saved with the model but never trained."""


def kernel_parameter(value: Array) -> nnx.Param:
  """An ``nnx.Param`` marked as a learned parameter of a parametric kernel.

  The mark (``kernel_parameter=True`` metadata) lets training code give these
  values their own learning rate and no weight decay. A plain ``Param`` type,
  rather than a subclass, keeps them in Linen's ``params`` collection when the
  layer is used through ``nnx.bridge``.
  """
  return nnx.Param(value, kernel_parameter=True)


def is_kernel_parameter(variable) -> bool:
  """True for values made by :func:`kernel_parameter` (theta, frequency, sigma, gamma, psi)."""
  return isinstance(variable, nnx.Param) and bool(
    variable.get_metadata().get("kernel_parameter", False)
  )


class FreeKernel(nnx.Module):
  """Learned weights: ``nnx.Conv``'s LeCun-normal initialisation, a bank's, or an array."""

  def __init__(
    self,
    kernel_shape: tuple[int, int, int, int],
    *,
    param_dtype,
    rngs: nnx.Rngs,
    source: sources.Free = sources.Free(),
  ):
    # (Other layers never see this draw: each layer has streams of its own, see
    # hybridconv.nn.layer_rngs, so arms of a study stay paired on every other layer.)
    key = rngs.params()
    if source.init is None:
      value = _free_kernel_init(key, kernel_shape, param_dtype)
    elif isinstance(source.init, str):
      value = fixed_kernel(
        sources.Fixed(source.init, source.options, source.normalize), kernel_shape
      )
    elif source.init.shape != tuple(kernel_shape):
      raise ValueError(
        f"Free init array has shape {source.init.shape}, but the layer's kernel "
        f"is {tuple(kernel_shape)} (kh, kw, cin, cout)"
      )
    else:
      value = source.init
    self.kernel = nnx.Param(jnp.asarray(value, param_dtype))

  def __call__(self) -> Array:
    return self.kernel[...]


class FrozenArrayKernel(nnx.Module):
  """A fixed or random kernel stored as :class:`FrozenKernel`."""

  def __init__(self, kernel: Array, *, param_dtype):
    self.kernel = FrozenKernel(jnp.asarray(kernel, param_dtype))

  def __call__(self) -> Array:
    return self.kernel[...]


def fixed_kernel(source: sources.Fixed, kernel_shape: tuple[int, int, int, int]) -> Array:
  """HWIO kernel of a named bank: filter ``o`` applied equally to every input channel."""
  kh, kw, cin, cout = kernel_shape
  bank = banks.make_bank(source.bank, (kh, kw), **dict(source.options))  # (kh, kw, n)
  if bank.ndim != 3 or bank.shape[:2] != (kh, kw):
    raise ValueError(
      f"fixed bank {source.bank!r} gave shape {bank.shape}, expected ({kh}, {kw}, n)"
    )
  available = bank.shape[-1]
  if cout > available:
    raise ValueError(
      f"fixed bank {source.bank!r} has {available} filter(s) at kernel size {(kh, kw)}, but "
      f"{cout} output channels were asked of it; give it at most {available} channels "
      "(e.g. as a group of a hybrid layer) or choose bank options with more filters"
    )
  spatial = bank[..., :cout]
  if source.normalize:
    norms = jnp.sqrt(jnp.sum(spatial**2, axis=(0, 1), keepdims=True))
    spatial = spatial / jnp.maximum(norms, 1e-12) / math.sqrt(cin)
  else:
    spatial = spatial / cin
  return jnp.broadcast_to(spatial[:, :, None, :], kernel_shape)


class GaborKernel(nnx.Module):
  """Parametric Gabor kernels with raw parameters mapped through the constraint maps.

  Raw parameters have shape ``(cin, cout)`` in 'pair' mode and ``(cout,)`` in
  'mix' mode. theta and psi are used as they are (periodic); frequency, sigma
  and gamma go through :func:`hybridconv.kernels.constraints.bounded_log`, so
  no optimiser step can produce aliasing, a degenerate envelope or NaN.
  """

  def __init__(
    self,
    source: sources.Gabor,
    kernel_shape: tuple[int, int, int, int],
    *,
    param_dtype,
    rngs: nnx.Rngs,
  ):
    kh, kw, cin, cout = kernel_shape
    self.kernel_size = (kh, kw)
    self.channels = source.channels
    self.zero_mean = source.zero_mean
    self.frequency_bounds = constraints.frequency_bounds(*source.frequency_bounds)
    self.sigma_bounds = constraints.Bounds(0.5, float(max(kh, kw, 2)))
    self.gamma_bounds = constraints.Bounds(0.2, 5.0)

    if source.init == "grid":
      low, high = source.frequency_range
      num_scales = -(-cout // min(source.num_orientations, cout))
      octaves = math.log2(high / low) / (num_scales - 1) if num_scales > 1 else 1.0
      values = init.grid_init(
        cout,
        num_orientations=source.num_orientations,
        highest_frequency=high,
        octaves_per_step=octaves,
        bandwidth=source.bandwidth,
        gamma=source.gamma,
        psi=source.psi,
      )
    else:
      values = init.random_init(
        rngs.params(),
        cout,
        frequency_range=source.frequency_range,
        bandwidth=source.bandwidth,
        gamma=source.gamma,
      )
    raw = {
      "theta": values["theta"],
      "frequency": self._inverse(values["frequency"], self.frequency_bounds),
      "sigma": self._inverse(values["sigma"], self.sigma_bounds),
      "gamma": self._inverse(values["gamma"], self.gamma_bounds),
      "psi": values["psi"],
    }
    shape = (cin, cout) if self.channels == "pair" else (cout,)
    for name in sources.GABOR_PARAMETERS:
      value = jnp.broadcast_to(raw[name], shape).astype(param_dtype)
      setattr(self, name, kernel_parameter(value) if name in source.learn else FrozenKernel(value))
    if self.channels == "mix":
      # Start as a luminance filter (equal weights); the mix learns colour.
      self.mix = nnx.Param(jnp.full((cin, cout), 1 / math.sqrt(cin), param_dtype))
    self.gain = nnx.Param(jnp.ones((cout,), param_dtype)) if source.gain else nnx.data(None)
    self.input_scale = 1 / math.sqrt(cin) if self.channels == "pair" else 1.0
    if source.init_from is not None:
      if source.init_from.shape != tuple(kernel_shape):
        raise ValueError(
          f"Gabor init_from has shape {source.init_from.shape}, but the layer's "
          f"kernel is {tuple(kernel_shape)} (kh, kw, cin, cout)"
        )
      self._start_from(source.init_from)

  def _start_from(self, target: Array) -> None:
    """Fitted shape parameters, then the learnable linear part by least squares."""
    fitted = gabor_init.fit_parameters(
      target,
      channels=self.channels,
      zero_mean=self.zero_mean,
      frequency=self.frequency_bounds,
      sigma=self.sigma_bounds,
      gamma=self.gamma_bounds,
    )
    raw = {
      "theta": fitted["theta"],
      "psi": fitted["psi"],
      "frequency": self._inverse(fitted["frequency"], self.frequency_bounds),
      "sigma": self._inverse(fitted["sigma"], self.sigma_bounds),
      "gamma": self._inverse(fitted["gamma"], self.gamma_bounds),
    }
    for name, value in raw.items():
      variable = getattr(self, name)
      variable[...] = jnp.broadcast_to(value, variable.shape).astype(variable.dtype)
    target = jnp.asarray(target, jnp.float32)
    if self.channels == "mix":
      self.mix[...] = jnp.ones_like(self.mix[...])
      self.mix[...] = gabor_init.least_squares_scale(
        target, self()[:, :, :1, :], axes=(0, 1)
      ).astype(self.mix.dtype)
    elif self.gain is not None:
      self.gain[...] = gabor_init.least_squares_scale(  # self() has unit gain here
        target, self(), axes=(0, 1, 2)
      ).astype(self.gain.dtype)
    gabor_init.refine(self, target)

  @staticmethod
  def _inverse(value: Array, bounds: constraints.Bounds) -> Array:
    clipped = jnp.clip(value, bounds.low, bounds.high)
    fraction = (jnp.log(clipped) - math.log(bounds.low)) / math.log(bounds.high / bounds.low)
    fraction = jnp.clip(fraction, _INIT_MARGIN, 1 - _INIT_MARGIN)
    return jnp.log(fraction) - jnp.log1p(-fraction)

  def parameters(self) -> dict[str, Array]:
    """Constrained Gabor parameters (theta wrapped to [0, pi) is left to the caller)."""
    return {
      "theta": self.theta[...],
      "frequency": constraints.bounded_log(self.frequency[...], self.frequency_bounds),
      "sigma": constraints.bounded_log(self.sigma[...], self.sigma_bounds),
      "gamma": constraints.bounded_log(self.gamma[...], self.gamma_bounds),
      "psi": self.psi[...],
    }

  def __call__(self) -> Array:
    p = self.parameters()
    kernel = gabor.gabor_real(
      self.kernel_size,
      p["theta"],
      p["frequency"],
      p["sigma"],
      p["gamma"],
      p["psi"],
      zero_mean=self.zero_mean,
      unit_norm=True,
    )
    if self.channels == "mix":
      kernel = kernel[:, :, None, :] * self.mix[...]
    kernel = kernel * self.input_scale
    if self.gain is not None:
      kernel = kernel * self.gain[...]
    return kernel.astype(self.theta[...].dtype)


class HybridKernel(nnx.Module):
  """Kernels of several sources concatenated along the output-channel axis."""

  def __init__(
    self,
    source: sources.Hybrid,
    kernel_shape: tuple[int, int, int, int],
    *,
    param_dtype,
    rngs: nnx.Rngs,
  ):
    kh, kw, cin, cout = kernel_shape
    counts = source.counts(cout)
    self.groups = nnx.List(
      [
        build_kernel_module(group_source, (kh, kw, cin, count), param_dtype=param_dtype, rngs=rngs)
        for (group_source, _), count in zip(source.groups, counts, strict=True)
      ]
    )
    self.counts = tuple(counts)

  def __call__(self) -> Array:
    return jnp.concatenate([group() for group in self.groups], axis=-1)


def build_kernel_module(
  source: sources.KernelSource,
  kernel_shape: tuple[int, int, int, int],
  *,
  param_dtype=jnp.float32,
  rngs: nnx.Rngs,
) -> nnx.Module:
  """The NNX module producing kernels of ``kernel_shape`` (HWIO) for ``source``."""
  source = sources.parse(source)
  if isinstance(source, sources.Free):
    return FreeKernel(kernel_shape, param_dtype=param_dtype, rngs=rngs, source=source)
  if isinstance(source, sources.Gabor):
    return GaborKernel(source, kernel_shape, param_dtype=param_dtype, rngs=rngs)
  if isinstance(source, sources.Fixed):
    return FrozenArrayKernel(fixed_kernel(source, kernel_shape), param_dtype=param_dtype)
  if isinstance(source, sources.Random):
    return FrozenArrayKernel(
      random_kernels.random_he_kernel(source.seed or 0, kernel_shape), param_dtype=param_dtype
    )
  if isinstance(source, sources.Hybrid):
    return HybridKernel(source, kernel_shape, param_dtype=param_dtype, rngs=rngs)
  raise ValueError(
    f"{type(source).__name__} is a layer structure, not a kernel source; "
    "build it with hybridconv.nn.conv_layer"
  )
