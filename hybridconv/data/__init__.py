"""Data sources (IDX files, TFDS, procedural gratings, image folders) and input pipelines.

* :func:`load_dataset` reads the configured source into an :class:`ArrayDataset`.
* :class:`DevicePipeline` keeps the dataset on the devices; batch ``s`` is a pure
  function of ``(seed, s)``.
* :class:`StreamingPipeline` streams through grain with per-process shards and a
  checkpointable iterator.
* :func:`build_pipeline` picks one from ``data.pipeline``.
* :func:`open_imagefolder` reads a ``train/`` + ``val/`` folder of class folders
  of JPEG/PNG files; :class:`DecodeConfig` says how such variable-size images are
  decoded and cropped in grain's workers.
"""

from hybridconv.data.augment import Augment
from hybridconv.data.dataset import ArrayDataset
from hybridconv.data.device_pipeline import DevicePipeline
from hybridconv.data.encoded import DecodeConfig
from hybridconv.data.imagefolder import open_imagefolder, write_class_names
from hybridconv.data.pipeline import (
  Pipeline,
  build_pipeline,
  check_config,
  known_input_shape,
  load_dataset,
)

__all__ = [
  "ArrayDataset",
  "ArraySource",
  "Augment",
  "DecodeConfig",
  "DevicePipeline",
  "Pipeline",
  "StreamingPipeline",
  "build_pipeline",
  "check_config",
  "known_input_shape",
  "load_dataset",
  "open_imagefolder",
  "write_class_names",
]

_LAZY = {"ArraySource", "StreamingPipeline"}  # grain is slow to import: only when used


def __getattr__(name: str):
  if name in _LAZY:
    from hybridconv.data import streaming  # noqa: PLC0415

    return getattr(streaming, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
