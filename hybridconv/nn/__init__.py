"""Flax NNX conv layers whose kernels are free, parametric Gabor, fixed, random or a mix.

Import surface::

  from hybridconv.nn import KernelConv, BankMixConv, conv_layer, sources
  conv = KernelConv(3, 64, 11, strides=4, source='hybrid', rngs=nnx.Rngs(0))

Variable types: learned values are ``nnx.Param`` (parametric kernel parameters
are marked, see :func:`is_kernel_parameter`, so training code can give them their
own learning rate and no weight decay); fixed banks, random kernels and
non-learned Gabor parameters are :class:`FrozenKernel`, never trained but saved.

``convert(model, spec)`` swaps the ``nnx.Conv`` layers of any NNX model for
:class:`KernelConv` layers (see :mod:`hybridconv.nn.conversion`).

``max_pool`` is ``nnx.max_pool`` with the same outputs and gradients and a
gradient that is 10-30x cheaper on XLA:CPU (see :mod:`hybridconv.nn.pooling`).
"""

from hybridconv.nn import sources
from hybridconv.nn.conv import BankMixConv, KernelConv, conv_layer, convolve
from hybridconv.nn.conversion import Replacement, convert, find_convs
from hybridconv.nn.introspect import KernelGroup, conv_layers, kernel_groups
from hybridconv.nn.kernel_modules import (
  FreeKernel,
  FrozenArrayKernel,
  FrozenKernel,
  GaborKernel,
  HybridKernel,
  build_kernel_module,
  is_kernel_parameter,
)
from hybridconv.nn.pooling import max_pool

__all__ = [
  "BankMixConv",
  "FreeKernel",
  "FrozenArrayKernel",
  "FrozenKernel",
  "GaborKernel",
  "HybridKernel",
  "KernelConv",
  "KernelGroup",
  "Replacement",
  "build_kernel_module",
  "conv_layer",
  "conv_layers",
  "convert",
  "convolve",
  "find_convs",
  "is_kernel_parameter",
  "kernel_groups",
  "max_pool",
  "sources",
]
