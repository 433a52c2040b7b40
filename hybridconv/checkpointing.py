"""Orbax checkpoints of the train state, with the config and run metadata beside it.

One ``ocp.CheckpointManager`` under ``<workdir>/checkpoints``; each step
directory holds the items

* ``state``: the ``TrainState`` pytree (``StandardSave``), restored into
  abstract targets that carry the live shardings, so a restore lands directly
  on the mesh it will be used on;
* ``config``: the run's config as JSON, so a checkpoint explains itself;
* ``metadata``: step, epoch, wall time, process/device counts, versions;
* ``data`` (streaming pipelines only): the data iterator's state.

Saves are asynchronous: ``save`` returns once the arrays are copied off the
device, so the next (donating) train step can start at once. ``close`` waits
for pending writes; use the checkpointer as a context manager so that happens
on every exit path.
"""

from __future__ import annotations

import os
from typing import Any

import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers as policies

BEST_METRIC = "eval/accuracy"
ITEMS = ("state", "config", "metadata", "data")


def _best_metric(metrics: dict[str, float]) -> float:
  return metrics[BEST_METRIC]


class Checkpointer:
  """Saves and restores ``TrainState``s in ``directory``; keeps the latest N and the best.

  Args:
    directory: absolute path of the checkpoint root (created if missing).
    keep: number of most recent checkpoints to keep (>= 1).
    keep_best: number of checkpoints with the highest eval accuracy to keep as
      well (0: none). Only checkpoints saved with eval metrics compete.
    async_save: write in a background thread after the device-to-host copy.
  """

  def __init__(self, directory: str, *, keep: int, keep_best: int, async_save: bool):
    if keep < 1:
      raise ValueError(f"config.checkpoint.keep={keep} must be >= 1")
    if keep_best < 0:
      raise ValueError(f"config.checkpoint.keep_best={keep_best} must be >= 0")
    preserve = [policies.LatestN(n=keep)]
    if keep_best:
      preserve.append(
          policies.BestN(
              get_metric_fn=_best_metric, reverse=False,
              n=keep_best, keep_checkpoints_without_metrics=False,
          )
      )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(preserve),
        # best_fn also makes orbax write each checkpoint's metrics to disk, so the
        # best checkpoint is still known (and kept) after a restart.
        best_fn=_best_metric if keep_best else None,
        enable_async_checkpointing=async_save,
        # A process killed mid-save leaves a temporary directory; drop it.
        cleanup_tmp_directories=True,
        create=True,
    )
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(self.directory, item_names=ITEMS, options=options)

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def latest_step(self) -> int | None:
    """The newest finished checkpoint's step, or None."""
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    """The kept checkpoint with the highest eval accuracy, or None."""
    return self._manager.best_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(
      self,
      step: int,
      state,
      *,
      config_json: dict[str, Any],
      metadata: dict[str, Any],
      metrics: dict[str, float] | None = None,
      data_state: dict[str, Any] | None = None,
  ) -> bool:
    """Starts saving ``state`` as checkpoint ``step``; False if it already exists.

    Must be called by every process. ``metrics`` (with ``eval/accuracy``) make
    the checkpoint a candidate for the keep-best policy.
    """
    if step in self._manager.all_steps():
      return False
    items = {
        "state": ocp.args.StandardSave(state),
        "config": ocp.args.JsonSave(config_json),
        "metadata": ocp.args.JsonSave(metadata),
    }
    if data_state is not None:
      items["data"] = ocp.args.JsonSave(data_state)
    saved = self._manager.save(
        step, args=ocp.args.Composite(**items), metrics=metrics, force=True
    )
    if saved:
      logging.info("checkpoint %d: saving to %s", step, self.directory)
    return saved

  def restore(self, step: int, abstract_state) -> tuple[Any, dict[str, Any], dict | None]:
    """``(state, metadata, data_state)`` of checkpoint ``step``.

    Args:
      step: an existing checkpoint step.
      abstract_state: pytree of ``jax.ShapeDtypeStruct`` with shardings, the
        same structure as the saved state.
    """
    items = {
        "state": ocp.args.StandardRestore(abstract_state),
        "metadata": ocp.args.JsonRestore(),
    }
    has_data = os.path.isdir(os.path.join(self.directory, str(step), "data"))
    if has_data:
      items["data"] = ocp.args.JsonRestore()
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    return restored["state"], restored["metadata"], (restored["data"] if has_data else None)

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves, then releases the manager's threads."""
    self._manager.wait_until_finished()
    self._manager.close()
