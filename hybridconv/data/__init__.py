"""Data sources (IDX files, TFDS, procedural gratings) and input pipelines.

* :func:`load_dataset` reads the configured source into an :class:`ArrayDataset`.
* :class:`DevicePipeline` keeps the dataset on the devices; batch ``s`` is a pure
  function of ``(seed, s)``.
* :class:`StreamingPipeline` streams through grain with per-process shards and a
  checkpointable iterator.
* :func:`build_pipeline` picks one from ``data.pipeline``.
"""

from hybridconv.data.augment import Augment
from hybridconv.data.dataset import ArrayDataset
from hybridconv.data.device_pipeline import DevicePipeline
from hybridconv.data.pipeline import Pipeline, build_pipeline, check_config, load_dataset
from hybridconv.data.streaming import ArraySource, StreamingPipeline

__all__ = [
    "ArrayDataset",
    "ArraySource",
    "Augment",
    "DevicePipeline",
    "Pipeline",
    "StreamingPipeline",
    "build_pipeline",
    "check_config",
    "load_dataset",
]
