"""A finished run's config, checkpoint and test split, as the robustness evaluation needs them.

Checks come first and cost nothing (:func:`resolve_checkpoint` reads the
workdir's listing and, for ``best``, orbax's saved metrics); only then are the
data loaded and the model restored. The model is rebuilt exactly as training
builds it (:func:`hybridconv.training.train.create_train_state`) and the checkpoint is
restored through :class:`hybridconv.training.checkpointing.Checkpointer`, with its
checksums, into targets replicated over the mesh. Nothing in the workdir is
changed: a damaged checkpoint is an error here, not moved aside as a resumed
training run would.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import ml_collections
import numpy as np

from hybridconv import configlib, data, run_layout
from hybridconv.training import checkpointing, optim, train
from hybridconv.training import state as ts

CHECKPOINT_CHOICES = "'latest', 'best' or a saved step"


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run was trained with (its ``config.json``), locked.

  Keys added to hybridconv since the run was trained take their defaults
  (:func:`hybridconv.configlib.with_defaults`).
  """
  path = os.path.join(workdir, run_layout.CONFIG_FILE)
  if not os.path.isfile(path):
    raise ValueError(
      f"--workdir={workdir!r} has no {run_layout.CONFIG_FILE}: not a directory "
      "written by `hybridconv train`"
    )
  with open(path, encoding="utf-8") as f:
    config = ml_collections.ConfigDict(configlib.with_defaults(json.load(f)))
  config.lock()
  return config


def _checkpointer(config, workdir: str) -> checkpointing.Checkpointer:
  return checkpointing.Checkpointer(
    os.path.join(workdir, run_layout.CHECKPOINT_DIR),
    keep=config.checkpoint.keep,
    keep_best=config.checkpoint.keep_best,
    async_save=False,
  )


def resolve_checkpoint(config, workdir: str, checkpoint: str | int) -> int:
  """The step that ``checkpoint`` (``'latest'``, ``'best'`` or a step) names in ``workdir``.

  Raises:
    ValueError: no checkpoint at all, an unknown choice, a step that was not
      saved (or no longer kept), or ``best`` without eval-scored checkpoints.
  """
  directory = os.path.join(workdir, run_layout.CHECKPOINT_DIR)
  steps = checkpointing.existing_steps(directory)
  if not steps:
    raise ValueError(f"--workdir={workdir!r} has no checkpoint in {directory}; train it first")
  text = str(checkpoint).strip()
  if text == "latest":
    return steps[-1]
  if text == "best":
    with _checkpointer(config, workdir) as manager:
      best = manager.best_step()
    if best is None:
      raise ValueError(
        f"--checkpoint=best: {workdir!r} has no checkpoint scored by eval accuracy "
        f"(config.checkpoint.keep_best={config.checkpoint.keep_best}); use 'latest' or one of "
        f"the steps {steps}"
      )
    return best
  if not text.isdigit():
    raise ValueError(
      f"--checkpoint={checkpoint!r} is not {CHECKPOINT_CHOICES}; saved steps: {steps}"
    )
  if int(text) not in steps:
    raise ValueError(
      f"--checkpoint={checkpoint!r}: no checkpoint of step {int(text)} in "
      f"{directory}; saved steps: {steps}"
    )
  return int(text)


class TestSplit(NamedTuple):
  """The uint8 test split and the normalisation constants training used."""

  images: np.ndarray
  labels: np.ndarray
  mean: np.ndarray
  std: np.ndarray
  num_classes: int
  steps_per_epoch: int


def check_data_supported(config) -> None:
  """The evaluation holds the test split in memory: refuses a streamed TFDS dataset."""
  if config.data.pipeline == "streaming" and config.data.source == "tfds":
    raise ValueError(
      f"data.source='tfds' with data.pipeline='streaming' ({config.data.name}) is not "
      "supported by `hybridconv evaluate`: it loads the whole test split into memory; "
      "supported: every source with data.pipeline='device', and 'idx'/'gratings' streaming"
    )


def load_test_split(config, mesh) -> TestSplit:
  """The test split, with mean/std computed exactly as the run's own pipeline computed them."""
  check_data_supported(config)
  pipeline = data.build_pipeline(
    config.data,
    global_batch_size=config.batch_size,
    eval_batch_size=config.eval_batch_size,
    seed=config.seed,
    mesh=mesh,
  )
  dataset = data.load_dataset(config.data)
  return TestSplit(
    dataset.test_images,
    dataset.test_labels,
    np.asarray(pipeline.mean),
    np.asarray(pipeline.std),
    pipeline.num_classes,
    pipeline.steps_per_epoch,
  )


def restore_model(
  config, workdir: str, step: int, split: TestSplit, mesh
) -> tuple[ts.ModelFunctions, Any, Any]:
  """``(model functions, params, model_state)`` of checkpoint ``step``, replicated on ``mesh``.

  The optimiser is built only for the structure of the saved state; its
  schedule's values do not matter here.
  """
  tx, _ = optim.build_optimizer(config.optim, train.run_clock(config, split.steps_per_epoch))
  fns, state = train.create_train_state(
    config, num_classes=split.num_classes, image_shape=split.images.shape[1:], mesh=mesh, tx=tx
  )
  with _checkpointer(config, workdir) as manager:
    try:
      restored, _, _ = manager.restore(step, ts.abstract_like(state))
    except Exception as error:  # noqa: BLE001 (orbax/tensorstore raise many types)
      raise ValueError(
        f"checkpoint {step} in {manager.directory} cannot be restored: "
        f"{checkpointing._one_line(error)}"
      ) from error
  return fns, restored.params, restored.model_state
