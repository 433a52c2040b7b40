"""Which layers of a model have kernel sources, and which channels each kernel module makes.

Tracking (filter grids, Gabor drift) and validation ask these questions of any
model; they live here, beside the modules whose internals they read, so that
nothing above ``nn`` reads ``HybridKernel`` internals or imports ``models``.
"""

from __future__ import annotations

import dataclasses

from flax import nnx

from hybridconv.nn import kernel_modules as km
from hybridconv.nn.conv import BankMixConv, KernelConv


@dataclasses.dataclass(frozen=True)
class KernelGroup:
  """Output channels ``[start, stop)`` of a layer that come from one kernel module."""

  kind: str  # 'free', 'gabor' or 'frozen' (fixed bank or random)
  module: nnx.Module
  start: int
  stop: int
  path: str  # of the module inside the layer


def conv_layers(model: nnx.Module) -> dict[str, KernelConv | BankMixConv]:
  """A model's layers with a kernel source, keyed by spec name: the attribute path joined by '_'.

  These are the names ``model.kernels`` configures (``stage1_block1/conv1`` is
  ``stage1_block1_conv1``), so a layer's logs carry the name its kernel spec
  used. Zoo models declare ``conv_layer_names``: their layers come in that
  (forward) order, and a model whose layers and names disagree is refused.
  Other models list them in graph order.

  Raises:
    ValueError: if the model's conv layers and its ``conv_layer_names`` disagree.
  """
  found = {
    "_".join(map(str, path)): node
    for path, node in nnx.iter_graph(model)
    if isinstance(node, (KernelConv, BankMixConv)) and path
  }
  if not hasattr(model, "conv_layer_names"):
    return found
  names = tuple(model.conv_layer_names)
  if set(found) != set(names):
    raise ValueError(
      f"{type(model).__name__} has conv layers {sorted(found)} but declares "
      f"conv_layer_names {list(names)}"
    )
  return {name: found[name] for name in names}


def _groups(module: nnx.Module, start: int, path: str) -> list[KernelGroup]:
  if isinstance(module, km.HybridKernel):
    groups, offset = [], start
    for i, (child, count) in enumerate(zip(module.groups, module.counts, strict=True)):
      groups += _groups(child, offset, f"{path}/groups/{i}")
      offset += count
    return groups
  kind = {km.FreeKernel: "free", km.GaborKernel: "gabor"}.get(type(module), "frozen")
  stop = start + int(module().shape[-1])
  return [KernelGroup(kind, module, start, stop, path)]


def kernel_groups(layer: KernelConv | BankMixConv) -> list[KernelGroup]:
  """The kernel modules of a ``KernelConv`` or ``BankMixConv`` and their channel ranges."""
  if isinstance(layer, BankMixConv):
    return _groups(layer.bank, 0, "bank")
  return _groups(layer.kernel_source, 0, "kernel_source")
