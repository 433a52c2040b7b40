"""Per-layer kernel sources for the model zoo.

Every model names its conv layers (``conv1`` first) and asks
:func:`resolve_sources` which source each one uses. The rules, in order of
precedence: an entry for the layer's own name in ``kernels``; the ``'*'``
entry of ``kernels`` (every conv layer); ``first_layer`` for the first conv
layer; otherwise a free (learned) kernel. So "first layer Gabor, the rest
free" is ``first_layer='gabor'`` and "every layer hybrid" is
``kernels={'*': 'hybrid'}`` -- one config line each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hybridconv.nn import sources


def resolve_sources(layer_names: Sequence[str], *, first_layer: Any = "free",
                    kernels: Mapping[str, Any] | None = None) -> dict[str, sources.KernelSource]:
  """Kernel source of each conv layer of a model.

  Args:
    layer_names: the model's conv layer names in forward order.
    first_layer: source spec of the first conv layer.
    kernels: per-layer overrides, keyed by layer name or '*'.

  Raises:
    ValueError: for a key in ``kernels`` that names no conv layer of the model,
      or an invalid source spec.
  """
  kernels = dict(kernels or {})
  unknown = sorted(set(kernels) - set(layer_names) - {"*"})
  if unknown:
    raise ValueError(f"model.kernels names unknown conv layer(s) {unknown}; this model's conv layers are "
                     f"{list(layer_names)} (or '*' for all)")
  resolved = {}
  for index, name in enumerate(layer_names):
    if name in kernels:
      spec = kernels[name]
    elif "*" in kernels:
      spec = kernels["*"]
    elif index == 0:
      spec = first_layer
    else:
      spec = "free"
    resolved[name] = sources.parse(spec)
  return resolved
