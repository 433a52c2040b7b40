"""The train loop: steps, logging, evaluations, checkpoints, and the points where faults stop it.

:class:`TrainLoop` runs the jitted step from the restored step to the last,
dispatching step n before fetching step n-1's metrics so the host never stalls
the device. Its order within a step is what the reliability guarantees rest on
(tested in ``tests/reliability_*_test.py``):

1. dispatch step n, then fetch step n-1's metrics -- the non-finite check
   (:mod:`hybridconv.training.nonfinite`) happens on these already-fetched values;
2. at a log, eval or checkpoint step: fetch step n's metrics too, write the
   scalars, evaluate (abandoned at the next batch if a stop signal arrives);
3. decide whether to stop -- after logging and evaluation, so a signal that
   came during either is seen here; processes of a multi-process run agree;
4. save (every save follows the non-finite check of the state it saves), and
   on a stop wait for the write and raise :class:`preemption.Preempted`.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp

import hybridconv
from hybridconv import data, sharding, tracking
from hybridconv.training import metrics as metrics_lib
from hybridconv.training import nonfinite, preemption
from hybridconv.training import state as ts
from hybridconv.training.cadence import Cadence
from hybridconv.training.progress import Progress, Throughput

# Metric prefix of each evaluated split: ``eval/*`` is always the test split.
SPLIT_PREFIX = {"test": "eval", "validation": "val"}


def evaluate(
  eval_fn, state: ts.TrainState, pipeline, interrupted=None, split: str = "test"
) -> dict[str, float] | None:
  """Loss, top-1 (and top-5) accuracy of ``state`` on ``split``: ``eval/*`` (test) or ``val/*``.

  ``interrupted()`` is asked after each batch is dispatched; when it returns
  True the evaluation is abandoned and None returned (a stop signal arrived).
  """
  sums = None
  batches = pipeline.eval_batches() if split == "test" else pipeline.eval_batches(split)
  for batch in batches:
    out = eval_fn(state.params, state.model_state, batch)
    sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
    if interrupted is not None and interrupted():
      return None
  if sums is None:
    raise ValueError(f"the {split} split produced no evaluation batches")
  return metrics_lib.summarize_eval(jax.device_get(sums), prefix=SPLIT_PREFIX[split])


def has_validation(pipeline) -> bool:
  """Whether the pipeline holds a validation split out of the training images."""
  return "validation" in getattr(pipeline, "eval_splits", ())


def run_metadata(
  step: int, steps_per_epoch: int, eval_metrics: dict | None, logged: dict | None = None
) -> dict[str, Any]:
  """A checkpoint's metadata: where it is, what made it, its evaluation (``{}`` when none ran
  at ``step``) and ``logged``, the last value of every scalar logged so far (what a run
  resumed from it, even at its last step, needs for a summary equal to an uninterrupted one's)."""
  return {
    "step": step,
    "epoch": step / steps_per_epoch,
    "time": time.time(),
    "process_count": jax.process_count(),
    "device_count": jax.device_count(),
    "platform": jax.devices()[0].platform,
    "jax_version": jax.__version__,
    "hybridconv_version": hybridconv.__version__,
    "eval": eval_metrics or {},
    "logged": {key: float(value) for key, value in (logged or {}).items()},
  }


def pipeline_state(pipeline: data.Pipeline):
  return pipeline.get_state()


def pipeline_metrics(pipeline) -> dict[str, int]:
  """The pipeline's data counters (e.g. skipped unreadable images), where it keeps any."""
  return pipeline.metrics() if hasattr(pipeline, "metrics") else {}


def stop_requested(flag: preemption.PreemptionFlag, collective_point: bool) -> bool:
  """Whether to stop here; multi-process runs agree, at points every process reaches."""
  if jax.process_count() == 1:
    return bool(flag)
  return collective_point and sharding.any_process(bool(flag))


class TrainLoop:
  """The train loop: steps from ``state.step`` to ``total_steps`` with logging, evals, saves.

  Order within a step, which the fault guarantees rest on: dispatch step n,
  then fetch step n-1's metrics (the non-finite check happens here); at a log,
  eval or checkpoint step fetch step n's too, write the scalars, evaluate,
  then decide whether to stop (a signal may have come during any of these),
  save, and stop. Every save therefore follows the non-finite check of the
  state it saves.
  """

  def __init__(
    self,
    cadence: Cadence,
    *,
    pipeline,
    train_fn,
    eval_fn,
    checkpointer,
    logger: tracking.Logger,
    flag,
    fault,
    monitor,
    config_json: dict,
    batch_size: int,
    is_main_process: bool,
    log_checkpoints: bool = False,
    summarize=None,
  ):
    self.cadence, self.total_steps = cadence, cadence.total_steps
    self.pipeline, self.train_fn, self.eval_fn = pipeline, train_fn, eval_fn
    self.checkpointer, self.logger, self.flag, self.fault = checkpointer, logger, flag, fault
    self.monitor, self.config_json = monitor, config_json
    self.steps_per_epoch = pipeline.steps_per_epoch
    self.means = metrics_lib.MeanAccumulator()
    self.timer = Throughput(batch_size)
    self.is_main_process = is_main_process
    self.log_checkpoints = log_checkpoints  # checkpoints as W&B artifact references
    self.summarize = summarize  # summarize(state, step): filter summaries, or None
    self.pending = None  # (step, device metrics) of the step dispatched last
    self.final: dict[str, float] = {}
    self.progress: Progress | None = None
    self.last_save = time.monotonic()  # for the wall-clock checkpoint cadence

  def _fetch(self) -> None:
    """Brings the pending step's metrics to the host and checks them for non-finite values."""
    if self.pending is None:
      return
    at, device_metrics = self.pending
    self.pending = None
    scalars = jax.device_get(device_metrics)
    flags = scalars.pop(nonfinite.FLAGS_KEY)
    self.monitor.check(at, scalars, flags)
    self.means.add(scalars)

  def _log(self, step: int) -> None:
    self._fetch()
    scalars = self.means.pop()
    if not scalars:
      return
    scalars.update(self.timer.rates())
    scalars["epoch"] = step / self.steps_per_epoch
    scalars.update(pipeline_metrics(self.pipeline))
    if not self.cadence.scalars_due(step):
      scalars = tracking.without_layer_norms(scalars)
    self.fault.at("log", step)
    self.logger.log_scalars(step, scalars)
    self.progress.log(
      step, {"loss": scalars["train/loss"], "img/s": scalars.get("images_per_sec", float("nan"))}
    )
    self.final.update(scalars)

  def _evaluate(self, state, step: int) -> dict[str, float] | None:
    """Evaluates and logs; None if a stop signal interrupted it (single-process runs)."""

    def interrupted() -> bool:
      self.fault.at("eval", step)
      return jax.process_count() == 1 and bool(self.flag)

    # With a validation hold-out, periodic evaluations read it and the test split is
    # evaluated once, at the end (nothing is chosen on the test split).
    splits = ["test"]
    if has_validation(self.pipeline):
      splits = ["validation", "test"] if step == self.total_steps else ["validation"]
    eval_metrics = {}
    with self.timer.paused(), self.progress.paused("eval"):
      for split in splits:
        metrics = evaluate(self.eval_fn, state, self.pipeline, interrupted, split)
        if metrics is None:
          return None
        eval_metrics.update(metrics)
    self.logger.log_scalars(step, eval_metrics)
    self.progress.evaluated(step, eval_metrics)
    self.final.update(eval_metrics)
    return eval_metrics

  def _save(self, state, step: int, eval_metrics: dict | None) -> None:
    metadata = run_metadata(step, self.steps_per_epoch, eval_metrics, self.final)
    metadata["consecutive_skips"] = self.monitor.consecutive
    with self.timer.paused(), self.progress.paused("checkpoint"):
      self.checkpointer.save(
        step,
        state,
        config_json=self.config_json,
        metadata=metadata,
        metrics=eval_metrics,
        data_state=pipeline_state(self.pipeline),
      )
    self.last_save = time.monotonic()
    if self.log_checkpoints:
      self.logger.log_artifact(
        f"file://{self.checkpointer.directory}/{step}", "checkpoints", "model"
      )

  def _stop(self, state, step: int, eval_metrics: dict | None):
    """Saves (unless checkpoint ``step`` exists), waits for the write, raises Preempted."""
    self._save(state, step, eval_metrics)
    self.checkpointer.wait_until_finished()
    raise preemption.Preempted(step, self.flag.signal_name or "a signal to another process")

  def _clock_save_due(self, log_due: bool) -> bool:
    """Whether ``checkpoint.every_minutes`` has passed since the last save (checked at log
    events, which every process reaches at the same steps; multi-process runs agree)."""
    seconds = self.cadence.checkpoint_seconds
    if seconds <= 0 or not log_due:
      return False
    late = time.monotonic() - self.last_save >= seconds
    return late if jax.process_count() == 1 else sharding.any_process(late)

  def _summarize(self, state, step: int) -> None:
    if self.summarize is not None and self.cadence.filters_due(step):
      with self.timer.paused(), self.progress.paused("summary"):
        self.summarize(state, step)
        self.fault.at("summary", step)

  def run(self, state, resumed: dict | None) -> dict[str, float]:
    """Trains to ``total_steps``; ``resumed``: the restored checkpoint's metadata, or None."""
    step = int(jax.device_get(state.step))
    resumed_eval = None if resumed is None else resumed.get("eval")
    if resumed:
      # Checkpoints from before ``logged`` was kept carry their evaluation only.
      self.final.update(resumed.get("logged") or resumed_eval or {})
    self.progress = Progress(
      total_steps=self.total_steps,
      initial_step=step,
      enabled=self.is_main_process,
      remaining_events=self.cadence.remaining,
    )
    eval_metrics = None
    try:
      if step < self.total_steps and stop_requested(self.flag, True):
        # The signal came while the data loaded or the state was built or restored.
        raise preemption.Preempted(
          step, self.flag.signal_name or "a signal to another process", saved=step > 0
        )
      if resumed_eval == {} and self.cadence.eval_due(step):
        # The checkpoint was saved when a signal interrupted this step's evaluation (at the
        # last step too: the validation and test readings of the end are logged as usual).
        eval_metrics = self._evaluate(state, step)
        if eval_metrics is None:
          self._stop(state, step, None)
      if step == 0:
        self._summarize(state, 0)
      while step < self.total_steps:
        batch = self.fault.poison(self.pipeline.train_batch(step), step + 1)
        if not self.timer.started:
          self.progress.compiling()
        state, step_metrics = self.train_fn(state, batch)
        step += 1
        self.fault.at("step", step)
        self._fetch()  # step n-1: overlaps with step n on the device
        self.pending = (step, step_metrics)
        if not self.timer.started:
          # The session's first step compiles: wait for it before the clock starts.
          self._fetch()
          self.progress.compiled(step)
        self.timer.count()
        self.progress.step(step)

        eval_due = self.cadence.eval_due(step)
        checkpoint_due = self.cadence.checkpoint_due(step)
        log_due = self.cadence.log_due(step)
        # Single-process runs stop at once; multi-process ones agree below.
        stopping = jax.process_count() == 1 and bool(self.flag)
        if log_due or stopping:
          self._log(step)
        eval_metrics = None
        if eval_due and not stopping:
          eval_metrics = self._evaluate(state, step)
        if not stopping:
          self._summarize(state, step)
        # A signal during logging, evaluation or a filter summary stops here too.
        stopping = (
          stopping or (eval_due and eval_metrics is None) or stop_requested(self.flag, log_due)
        )
        if stopping:
          self._log(step)  # the steps since the last log event, if any
          self._stop(state, step, eval_metrics)
        if checkpoint_due or self._clock_save_due(log_due):
          self._save(state, step, eval_metrics if eval_due else None)

      if "eval/accuracy" not in self.final:
        # No evaluation at the end (``eval_every`` 0, or a checkpoint older than its
        # readings in the metadata): evaluate the final state.
        eval_metrics = evaluate(self.eval_fn, state, self.pipeline)
        self.final.update(eval_metrics)
    finally:
      self.progress.close()
    self.final.update(step=step, train_seconds=self.timer.total_seconds)
    self.final.update(pipeline_metrics(self.pipeline))
    if self.timer.total_images:
      self.final["images_per_sec"] = self.timer.total_images / max(self.timer.total_seconds, 1e-9)
    return self.final
