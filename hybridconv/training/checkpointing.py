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

What survives faults:

* a process killed while writing leaves ``<step>.orbax-checkpoint-tmp-*``, which
  orbax never lists as a checkpoint (a step directory appears only by atomic
  rename once everything is written) and deletes when the next run opens the
  directory (``cleanup_tmp_directories``); older checkpoints are removed only
  after the new one is committed;
* a damaged checkpoint (truncated, deleted or altered files) fails to restore
  or fails its checksums (the section below);
  :meth:`Checkpointer.restore_latest` then names it, falls back to the newest
  intact one and moves the damaged ones to ``<directory>.corrupt/`` (never
  deleting them). If none restores, nothing is moved and the run stops.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging as py_logging
import os
import shutil
import sys
import tempfile
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers as policies

from hybridconv import sharding

BEST_METRIC = "eval/accuracy"
VALIDATION_BEST_METRIC = "val/accuracy"
# The checkpoint folder inside a run's workdir.
ITEMS = ("state", "config", "metadata", "data")
CORRUPT_SUFFIX = ".corrupt"
_ERROR_CHARS = 300  # of each checkpoint's restore error in a message
# After a failed restore its in-flight reads may still print (_stderr_kept_unless_failed): wait
# until they have been quiet this long, but no longer than the cap.
_LATE_READS_QUIET_SECONDS = 1.0
_LATE_READS_MAX_SECONDS = 10.0


# ---------------------------------------------------------------------------
# Checksums
#
# Exact checksums of a train state, stored with each checkpoint to detect damaged files.
#
# Orbax detects a truncated or missing array file, but a flipped or overwritten
# byte inside one restores silently as different numbers (measured with orbax
# 0.12.8: a single changed byte in an OCDBT data file restores without error).
# So each checkpoint's metadata records one 32-bit checksum per array, computed
# on the device from the state being saved, and a restore recomputes and compares
# them.
#
# The checksum of an array is ``sum_i (2 i + 1) * bits_i mod 2**32`` over its
# elements' bit patterns. Integer addition modulo 2**32 is associative and
# commutative, so the value does not depend on the reduction order (any device
# count, any backend) -- a float sum would. The odd weights make every change of
# a single element, including one flipped bit, change the checksum, and make
# swapped elements visible.


def _checksum(x: jax.Array) -> jax.Array:
  x = jnp.asarray(x)
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.uint8)
  width = x.dtype.itemsize * 8
  if width == 64:  # two uint32 words per element (only with jax_enable_x64)
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
  else:
    bits = jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{width}")).astype(jnp.uint32)
    bits = bits.reshape(-1)
  weights = jax.lax.iota(jnp.uint32, bits.size) * jnp.uint32(2) + jnp.uint32(1)
  return jnp.sum(bits * weights, dtype=jnp.uint32)


@jax.jit
def _checksums(tree) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return jnp.stack([_checksum(x) for x in leaves]) if leaves else jnp.zeros((0,), jnp.uint32)


def fingerprint(tree) -> dict[str, int]:
  """``{array path: checksum}`` of every array in ``tree`` (one small device computation).

  Works for replicated arrays spanning several processes: every process gets
  the same (replicated) checksums and reads its local copy.
  """
  paths = [
    jax.tree_util.keystr(path, simple=True, separator="/")
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]
  ]
  sums = _checksums(tree)
  local = np.asarray(sums.addressable_data(0)) if hasattr(sums, "addressable_data") else sums
  return dict(zip(paths, (int(v) for v in np.asarray(local)), strict=True))


def first_mismatch(expected: dict[str, int], actual: dict[str, int]) -> str | None:
  """None if the fingerprints agree, else a phrase naming the first array that differs."""
  if expected.keys() != actual.keys():
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    return f"the arrays differ from those saved (missing {missing[:3]}, unexpected {extra[:3]})"
  bad = [path for path in expected if expected[path] != actual[path]]
  if not bad:
    return None
  return (
    f"{len(bad)} of {len(expected)} arrays do not match the checksums saved with it "
    f"(first: {bad[0]})"
  )


class CheckpointError(ValueError):
  """No checkpoint of a non-empty checkpoint directory could be restored."""


class Restored(NamedTuple):
  step: int
  state: Any
  metadata: dict[str, Any]
  data_state: dict[str, Any] | None


def _sha256(data: dict[str, Any]) -> str:
  return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _one_line(error: BaseException) -> str:
  text = " ".join(f"{type(error).__name__}: {error}".split())
  return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS] + "..."


def existing_steps(directory: str) -> list[int]:
  """Steps of the committed checkpoints in ``directory`` (no orbax manager, nothing created)."""
  if not os.path.isdir(directory):
    return []
  return sorted(
    int(name)
    for name in os.listdir(directory)
    if name.isdigit() and os.path.isdir(os.path.join(directory, name))
  )


def _best_metric(metrics: dict[str, float]) -> float:
  # A run with a validation hold-out evaluates the test split only at the end: rank by
  # validation accuracy, never by the test split.
  return metrics.get(VALIDATION_BEST_METRIC, metrics.get(BEST_METRIC))


def check_keep(keep: int, keep_best: int) -> None:
  """Refuses retention settings no checkpoint manager can honour."""
  if keep < 1:
    raise ValueError(f"config.checkpoint.keep={keep} must be >= 1")
  if keep_best < 0:
    raise ValueError(f"config.checkpoint.keep_best={keep_best} must be >= 0")


def _wait_until_quiet(fd: int) -> None:
  """Returns once nothing has been written to ``fd`` for a while (or at the cap)."""
  start = last_change = time.monotonic()
  size = os.fstat(fd).st_size
  while time.monotonic() - start < _LATE_READS_MAX_SECONDS:
    time.sleep(0.05)
    now_size = os.fstat(fd).st_size
    if now_size != size:
      size, last_change = now_size, time.monotonic()
    elif time.monotonic() - last_change >= _LATE_READS_QUIET_SECONDS:
      return


class _OrbaxFilter(py_logging.Filter):
  def filter(self, record: py_logging.LogRecord) -> bool:
    return "/orbax/" not in record.pathname


@contextlib.contextmanager
def _orbax_errors_quiet():
  """Drops orbax's own log lines while a checkpoint is opened or restored.

  orbax logs an unreadable checkpoint at ERROR level (several lines each) before it
  raises; the :class:`Checkpointer` turns every such failure into one message that
  names the checkpoint and the cause, so orbax's lines would only bury it.
  """
  logger, quiet = py_logging.getLogger("absl"), _OrbaxFilter()
  logger.addFilter(quiet)
  try:
    yield
  finally:
    logger.removeFilter(quiet)


@contextlib.contextmanager
def _stderr_kept_unless_failed():
  """Holds back what is written to stderr (the file descriptor) inside; calling the yielded
  function drops it, else it is written out at the end.

  A damaged checkpoint makes tensorstore's in-flight reads of its other arrays fail after
  orbax's event loop has closed, and each prints a ``RuntimeError: Event loop is closed``
  traceback from native code -- dozens of them, which would bury the one message that
  names the damaged checkpoint. Only the file descriptor catches native writes.
  """
  dropped = []
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    try:
      yield lambda: dropped.append(True)
    finally:
      sys.stderr.flush()
      if dropped:  # the failed restore's reads still in flight report after it: wait them out
        _wait_until_quiet(held.fileno())
      os.dup2(saved, 2)
      os.close(saved)
      if not dropped:
        held.seek(0)
        sys.stderr.write(held.read().decode("utf-8", "replace"))
        sys.stderr.flush()


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
    check_keep(keep, keep_best)
    preserve = [policies.LatestN(n=keep)]
    if keep_best:
      preserve.append(
        policies.BestN(
          get_metric_fn=_best_metric,
          reverse=False,
          n=keep_best,
          keep_checkpoints_without_metrics=False,
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
    try:
      with _orbax_errors_quiet():
        self._manager = ocp.CheckpointManager(self.directory, item_names=ITEMS, options=options)
    except (ValueError, OSError) as error:  # e.g. a damaged metrics or metadata file
      raise CheckpointError(
        f"the checkpoints in {self.directory} cannot be read ({type(error).__name__}: "
        f"{str(error)[:_ERROR_CHARS]}); move that folder away to start the run over, or use "
        "a new --workdir"
      ) from error

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
    # Checksums of exactly what is saved, so a restore can tell damaged files.
    metadata = {**metadata, "fingerprint": fingerprint(state)}
    if data_state is not None:
      metadata["data_sha256"] = _sha256(data_state)
    items = {
      "state": ocp.args.StandardSave(state),
      "config": ocp.args.JsonSave(config_json),
      "metadata": ocp.args.JsonSave(metadata),
    }
    if data_state is not None:
      items["data"] = ocp.args.JsonSave(data_state)
    saved = self._manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
    if saved:
      logging.info("checkpoint %d: saving to %s", step, self.directory)
    return saved

  def restore(self, step: int, abstract_state) -> tuple[Any, dict[str, Any], dict | None]:
    """``(state, metadata, data_state)`` of checkpoint ``step``, verified by its checksums.

    Args:
      step: an existing checkpoint step.
      abstract_state: pytree of ``jax.ShapeDtypeStruct`` with shardings, the
        same structure as the saved state.

    Raises:
      ValueError: the restored arrays or data state do not match the checksums
        saved with them (damaged files). Orbax raises its own errors for
        missing or truncated files.
    """
    items = {
      "state": ocp.args.StandardRestore(abstract_state),
      "metadata": ocp.args.JsonRestore(),
    }
    has_data = os.path.isdir(os.path.join(self.directory, str(step), "data"))
    if has_data:
      items["data"] = ocp.args.JsonRestore()
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    metadata = dict(restored["metadata"])
    data_state = restored["data"] if has_data else None
    where = os.path.join(self.directory, str(step))
    sums = metadata.pop("fingerprint", None)  # absent in checkpoints from before checksums
    if sums is not None:
      problem = first_mismatch(sums, fingerprint(restored["state"]))
      if problem:
        raise ValueError(f"checkpoint {where}: {problem}")
    data_sum = metadata.pop("data_sha256", None)
    if data_state is not None and data_sum not in (None, _sha256(data_state)):
      raise ValueError(f"checkpoint {where}: the data iterator state does not match its checksum")
    return restored["state"], metadata, data_state

  def restore_latest(self, abstract_state) -> Restored | None:
    """The newest checkpoint that restores intact; None if there is no checkpoint.

    Damaged checkpoints newer than it are logged by name and moved to
    ``<directory>.corrupt/`` so the resumed run can write those steps again.
    A failure only counts as damage when an older checkpoint restores: if none
    does (a changed model, say), nothing is moved.

    Raises:
      CheckpointError: checkpoints exist but none could be restored; the
        message names each one with its error.
    """
    failures: list[tuple[int, BaseException]] = []
    for step in sorted(self.all_steps(), reverse=True):
      restored, error = None, None
      with _stderr_kept_unless_failed() as failed:
        try:
          with _orbax_errors_quiet():
            restored = Restored(step, *self.restore(step, abstract_state))
        except Exception as e:  # noqa: BLE001 (orbax/tensorstore raise many types; all mean "not usable")
          error = e
          failed()  # (held until its last reads have reported, see the context manager)
      # Every process must pick the same checkpoint.
      if sharding.all_processes(error is None):
        for failed, why in failures:  # only now is a failure damage, not a changed model
          logging.error(
            "checkpoint %s cannot be restored, resumed from step %d instead: %s",
            os.path.join(self.directory, str(failed)),
            step,
            _one_line(why),
          )
        if failures:
          self._quarantine([s for s, _ in failures])
        return restored
      error = error or RuntimeError("restored on this process, failed on another")
      failures.append((step, error))
    if not failures:
      return None
    details = "; ".join(f"step {step}: {_one_line(error)}" for step, error in failures)
    raise CheckpointError(
      f"none of the {len(failures)} checkpoint(s) in {self.directory} can be restored "
      f"({details}). If the config or the code changed the model or optimiser, use a new "
      "--workdir; otherwise move the damaged step directories away to start from scratch"
    )

  def _quarantine(self, steps: list[int]) -> None:
    """Moves damaged step directories to ``<directory>.corrupt/`` (process 0), then reloads."""
    target_root = self.directory + CORRUPT_SUFFIX
    if jax.process_index() == 0:
      os.makedirs(target_root, exist_ok=True)
      for step in steps:
        source = os.path.join(self.directory, str(step))
        target, n = os.path.join(target_root, str(step)), 1
        while os.path.exists(target):
          target, n = os.path.join(target_root, f"{step}.{n}"), n + 1
        shutil.move(source, target)
        logging.warning("moved damaged checkpoint %s to %s", source, target)
    sharding.sync_processes("hybridconv_checkpoint_quarantine")
    self._manager.reload()

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves, then releases the manager's threads."""
    self._manager.wait_until_finished()
    self._manager.close()
