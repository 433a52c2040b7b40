"""First-layer kernels at the start and the latest summary, kept light for studies.

A study asks what first-layer filters became (Gabor-likeness against a null,
where learnable Gabor parameters went) long after the runs' checkpoints are
deleted. At every filter summary the first conv layer's kernels (HWIO) and,
for parametric Gabor groups, their constrained parameters are written to
``<workdir>/filters/first_layer.npz``: arrays ``initial/kernel``,
``final/kernel`` (for a linear bank + mix layer, the kernel it equals, and its
bank as ``.../bank``), ``initial/gabor/<group>/<param>``, ``final/...`` and the
steps ``initial/step``, ``final/step``. A few KB per run; the initial entries
survive resumes because they are read back before the file is rewritten.
"""

from __future__ import annotations

import os

import numpy as np
from flax import nnx

from hybridconv import nn
from hybridconv.run_layout import SNAPSHOT_FILE
from hybridconv.tracking import filters


def first_layer_arrays(model: nnx.Module) -> dict[str, np.ndarray]:
  """``{'kernel': HWIO, 'gabor/<group>/<param>': values}`` of the model's first conv layer."""
  layers = nn.conv_layers(model)
  if not layers:
    return {}
  layer = next(iter(layers.values()))
  arrays = {"kernel": np.asarray(layer.kernel(), np.float32)}
  effective = layer.effective_kernel() if hasattr(layer, "effective_kernel") else None
  if effective is not None:  # a linear bank + mix: its filters are what it applies
    arrays = {"kernel": np.asarray(effective, np.float32), "bank": arrays["kernel"]}
  for group in nn.kernel_groups(layer):
    if group.kind == "gabor":
      for name, values in filters.gabor_values(group.module).items():
        arrays[f"gabor/{group.start}-{group.stop}/{name}"] = np.asarray(values, np.float32)
  return arrays


def read_snapshot(workdir: str) -> dict[str, np.ndarray]:
  """The arrays of ``filters/first_layer.npz`` ({} when absent)."""
  path = os.path.join(workdir, SNAPSHOT_FILE)
  if not os.path.exists(path):
    return {}
  with np.load(path) as data:
    return {key: data[key] for key in data.files}


def save_snapshot(workdir: str, model: nnx.Module, step: int) -> None:
  """Records the first layer at ``step``: as ``initial`` the first time, always as ``final``."""
  arrays = first_layer_arrays(model)
  if not arrays:
    return
  saved = read_snapshot(workdir)
  if "initial/step" not in saved:
    saved.update({f"initial/{k}": v for k, v in arrays.items()})
    saved["initial/step"] = np.asarray(step)
  saved = {k: v for k, v in saved.items() if not k.startswith("final/")}
  saved.update({f"final/{k}": v for k, v in arrays.items()})
  saved["final/step"] = np.asarray(step)
  path = os.path.join(workdir, SNAPSHOT_FILE)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "wb") as f:
    np.savez(f, **saved)
  os.replace(path + ".tmp", path)
