"""Data-parallel training and evaluation: ``train_and_evaluate(config, workdir)``.

The step is one pure function ``(state, batch) -> (state, metrics)``, jitted
once with the state donated, the batch sharded over the mesh's ``'data'`` axis
and the state replicated -- the per-step semantics of ``jax.pmap`` written with
``jit`` and ``NamedSharding`` (see ``hybridconv.sharding``). The loop dispatches
step n and only then fetches step n-1's metrics, so the host never waits for
the device except to keep it one step ahead.

Everything a step depends on is a function of (config, seed, step): batches come
from the data pipeline by step, dropout keys are ``fold_in(key, step)``. A run
resumed from a checkpoint therefore continues exactly as the uninterrupted run
would have.

Faults the loop is built to survive (tests in ``tests/reliability_*_test.py``):
SIGKILL anywhere (resume from the last checkpoint, bit-identical result);
SIGTERM/SIGINT (checkpoint at the next step boundary, also when the signal came
during compilation, evaluation or logging, then :class:`preemption.Preempted`);
damaged checkpoints (:meth:`checkpointing.Checkpointer.restore_latest`);
non-finite losses or gradients (:mod:`hybridconv.nonfinite`); a failing or
hanging extra metric writer (:class:`writers.BackgroundWriter`).
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax
from absl import logging
from flax import nnx

import hybridconv
from hybridconv import (
  checkpointing,
  data,
  faults,
  models,
  nonfinite,
  optim,
  preemption,
  sharding,
  validation,
  writers,
)
from hybridconv import metrics as metrics_lib
from hybridconv import train_state as ts
from hybridconv import workdir as workdir_lib
from hybridconv.progress import Progress, Throughput

CONFIG_FILE = workdir_lib.CONFIG_FILE
CHECKPOINT_DIR = "checkpoints"


# ---------------------------------------------------------------------------
# Set-up (validation in hybridconv.validation, all before anything is compiled)


def num_train_steps(config, steps_per_epoch: int) -> int:
  """``config.num_train_steps`` if set, else ``num_epochs`` worth of steps."""
  if config.num_train_steps > 0:
    return config.num_train_steps
  return max(1, math.ceil(config.num_epochs * steps_per_epoch))


def every_steps(epochs: float, steps_per_epoch: int) -> int:
  """An epoch-valued cadence in steps (at least every step)."""
  return max(1, round(epochs * steps_per_epoch))


def create_train_state(config, *, num_classes: int, image_shape, mesh, tx):
  """Builds the model and optimiser state directly on the mesh, replicated.

  The model is built once abstractly (no memory) for its graph definitions,
  then for real inside ``jit`` so parameters are created on the devices with
  the replicated sharding rather than on the host.

  Returns:
    (``ModelFunctions``, ``TrainState``)
  """
  dtype = ts.compute_dtype(config.compute_dtype)
  init_key, train_key = ts.training_keys(config.seed)

  def build(key):
    # ``dtype`` is the computation dtype (flax convention); parameters stay float32.
    return models.build_model(
        config.model, num_classes=num_classes, image_shape=tuple(image_shape),
        rngs=nnx.Rngs(params=key, dropout=jax.random.fold_in(key, 1)),
        dtype=None if dtype == jnp.float32 else dtype,
    )

  try:
    abstract_model = nnx.eval_shape(build, init_key)
  except ValueError as error:  # bad kernel specs, group sizes, image sizes
    raise ValueError(f"{error} {validation.model_context(config.model, image_shape)}") from error
  fns = ts.model_functions(abstract_model, dtype)
  validation.check_model(config.model, abstract_model, fns, image_shape=tuple(image_shape),
                         num_classes=num_classes)

  # Keys are arguments, not closed-over constants: XLA would otherwise try to
  # constant-fold the random initialisation, which compiles very slowly.
  @functools.partial(jax.jit, out_shardings=sharding.replicated(mesh))
  def init(init_key, train_key):
    _, params, _, model_state = ts.split_model(build(init_key))
    return ts.TrainState(
        step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
        opt_state=tx.init(params), rng=jax.random.key_data(train_key),
    )

  return fns, init(init_key, train_key)


# ---------------------------------------------------------------------------
# The step functions (pure; jitted in train_and_evaluate)


def train_step(state: ts.TrainState, batch, *, fns: ts.ModelFunctions, tx, schedule,
               label_smoothing: float, skip_nonfinite: bool = False):
  """One optimiser update on a global batch; returns the new state and scalar metrics.

  The metrics also hold ``nonfinite.FLAGS_KEY``: whether the loss and each
  gradient array are finite. With ``skip_nonfinite`` a non-finite step keeps
  the old params, optimiser state and model state (BatchNorm statistics) and
  only advances ``step``, so the batch is dropped and the optimiser's own
  count (hence its schedule) does not move.
  """
  key = ts.step_key(state)

  def loss_fn(params):
    logits, model_state = fns.apply(params, state.model_state, batch["image"], train=True,
                                    key=key)
    losses = metrics_lib.cross_entropy(logits, batch["label"], label_smoothing=label_smoothing)
    return jnp.mean(losses), (logits, model_state)

  (loss, (logits, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  flags = nonfinite.finite_flags(loss, grads)
  finite = nonfinite.all_finite(flags)
  if skip_nonfinite:
    params, opt_state, model_state = nonfinite.keep_if(
        finite, (params, opt_state, model_state),
        (state.params, state.opt_state, state.model_state))
  scalars = {
      "train/loss": loss,
      "train/accuracy": jnp.mean(metrics_lib.top_k_correct(logits, batch["label"], 1)),
      "train/learning_rate": schedule(state.step),
      "train/grad_norm": optax.tree.norm(grads),
      "train/update_norm": optax.tree.norm(updates),
      "train/param_norm": optax.tree.norm(params),
      "train/nonfinite": 1.0 - finite.astype(jnp.float32),
      nonfinite.FLAGS_KEY: flags,
  }
  new_state = state.replace(
      step=state.step + 1, params=params, model_state=model_state, opt_state=opt_state
  )
  return new_state, scalars


def eval_step(params, model_state, batch, *, fns: ts.ModelFunctions):
  """Sums of loss and correct predictions over the real examples of one batch."""
  logits, _ = fns.apply(params, model_state, batch["image"], train=False,
                        key=jax.random.key(0))
  return metrics_lib.eval_sums(logits, batch["label"], batch["mask"])


def evaluate(eval_fn, state: ts.TrainState, pipeline, interrupted=None
             ) -> dict[str, float] | None:
  """Test-split loss, top-1 (and top-5) accuracy of ``state``.

  ``interrupted()`` is asked after each batch is dispatched; when it returns
  True the evaluation is abandoned and None returned (a stop signal arrived).
  """
  sums = None
  for batch in pipeline.eval_batches():
    out = eval_fn(state.params, state.model_state, batch)
    sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
    if interrupted is not None and interrupted():
      return None
  if sums is None:
    raise ValueError("the test split produced no evaluation batches")
  return metrics_lib.summarize_eval(jax.device_get(sums))


# ---------------------------------------------------------------------------
# The loop


def _metadata(step: int, steps_per_epoch: int, eval_metrics: dict | None) -> dict[str, Any]:
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
  }


def _pipeline_state(pipeline):
  return pipeline.get_state() if hasattr(pipeline, "get_state") else None


def train_and_evaluate(config, workdir: str, *, writer: writers.MetricWriter | None = None
                       ) -> dict[str, float]:
  """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints) and evaluates.

  Args:
    config: a locked ``ml_collections.ConfigDict`` with the keys of
      ``configs/default.py``.
    workdir: run directory: ``config.json``, ``metrics.jsonl``, ``checkpoints/``.
    writer: extra metric writer (e.g. an experiment tracker). It runs in a
      background thread (:class:`writers.BackgroundWriter`), so a tracker that
      fails or hangs costs a warning, not the run; the JSON lines file is
      always written.

  Returns:
    the final metrics: ``step``, the last ``train/*`` means, ``eval/*`` of the
    final evaluation, ``images_per_sec`` (training throughput, compilation
    excluded) and ``train_seconds``.

  Raises:
    preemption.Preempted: stopped by SIGTERM/SIGINT after saving a checkpoint.
    nonfinite.NonFiniteError: a non-finite loss or gradient (``config.nan_policy``).
    checkpointing.CheckpointError: checkpoints exist but none can be restored.
    ValueError: a bad config, a config that changes the model of the workdir's
      checkpoints, or bad data -- before anything is compiled.
  """
  sharding.maybe_initialize_distributed(config.distributed)
  mesh = sharding.make_mesh()
  validation.validate_config(config, mesh)
  workdir = os.path.abspath(workdir)
  lead = jax.process_index() == 0
  fault = faults.from_env()
  checkpoint_dir = os.path.join(workdir, CHECKPOINT_DIR)
  config_json = workdir_lib.config_json(config)
  if checkpointing.existing_steps(checkpoint_dir):
    workdir_lib.check_resume(workdir, config_json, allow_change=config.allow_config_change)

  # From here on a signal stops the run at the next safe point, also one that
  # arrives while the data loads or the step compiles.
  with preemption.PreemptionFlag() as flag:
    pipeline = data.build_pipeline(
        config.data, global_batch_size=config.batch_size,
        eval_batch_size=config.eval_batch_size, seed=config.seed, mesh=mesh,
    )
    fault.at("data", 0)
    steps_per_epoch = pipeline.steps_per_epoch
    total_steps = num_train_steps(config, steps_per_epoch)
    tx, schedule = optim.build_optimizer(
        config.optim, total_steps=total_steps, steps_per_epoch=steps_per_epoch
    )
    fns, state = create_train_state(
        config, num_classes=pipeline.num_classes, image_shape=pipeline.image_shape,
        mesh=mesh, tx=tx,
    )
    os.makedirs(workdir, exist_ok=True)
    workdir_lib.write_config(workdir, config_json)

    replicated, batch_sharded = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    train_fn = jax.jit(
        functools.partial(train_step, fns=fns, tx=tx, schedule=schedule,
                          label_smoothing=config.label_smoothing,
                          skip_nonfinite=config.nan_policy == "skip"),
        in_shardings=(replicated, batch_sharded), out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    eval_fn = jax.jit(
        functools.partial(eval_step, fns=fns),
        in_shardings=(replicated, replicated, batch_sharded), out_shardings=replicated,
    )
    param_names = [optim.path_name(p) for p, _ in
                   jax.tree_util.tree_flatten_with_path(state.params)[0]]
    sinks = [writers.JsonlWriter(workdir)] if lead else []
    extra = [writers.BackgroundWriter(writer)] if writer is not None else []
    writer = writers.MultiWriter(sinks + extra)
    checkpointer = checkpointing.Checkpointer(
        checkpoint_dir, keep=config.checkpoint.keep,
        keep_best=config.checkpoint.keep_best, async_save=config.checkpoint.async_save,
    )
    with checkpointer:
      try:
        restored = checkpointer.restore_latest(ts.abstract_like(state))
        metadata = {}
        if restored is not None:
          state, metadata = restored.state, restored.metadata
          if restored.data_state is not None:
            pipeline.set_state(restored.data_state)
          logging.info("resumed from checkpoint %d in %s", restored.step, checkpointer.directory)
        monitor = nonfinite.Monitor(config.nan_policy, config.max_consecutive_skips, param_names,
                                    consecutive=metadata.get("consecutive_skips", 0))
        loop = _Loop(config, pipeline=pipeline, train_fn=train_fn, eval_fn=eval_fn,
                     checkpointer=checkpointer, writer=writer, flag=flag, fault=fault,
                     monitor=monitor, total_steps=total_steps, config_json=config_json,
                     lead=lead)
        return loop.run(state, resumed_eval=metadata.get("eval") if restored else None)
      finally:
        writer.close()


def _stop_requested(flag: preemption.PreemptionFlag, collective_point: bool) -> bool:
  """Whether to stop here; multi-process runs agree, at points every process reaches."""
  if jax.process_count() == 1:
    return bool(flag)
  return collective_point and sharding.any_process(bool(flag))


class _Loop:
  """The train loop: steps from ``state.step`` to ``total_steps`` with logging, evals, saves.

  Order within a step, which the fault guarantees rest on: dispatch step n,
  then fetch step n-1's metrics (the non-finite check happens here); at a log,
  eval or checkpoint step fetch step n's too, write the scalars, evaluate,
  then decide whether to stop (a signal may have come during any of these),
  save, and stop. Every save therefore follows the non-finite check of the
  state it saves.
  """

  def __init__(self, config, *, pipeline, train_fn, eval_fn, checkpointer, writer, flag, fault,
               monitor, total_steps: int, config_json: dict, lead: bool):
    self.config, self.pipeline = config, pipeline
    self.train_fn, self.eval_fn = train_fn, eval_fn
    self.checkpointer, self.writer, self.flag, self.fault = checkpointer, writer, flag, fault
    self.monitor, self.total_steps, self.config_json = monitor, total_steps, config_json
    self.steps_per_epoch = pipeline.steps_per_epoch
    self.eval_every = every_steps(config.eval_every_epochs, self.steps_per_epoch)
    self.checkpoint_every = every_steps(config.checkpoint.every_epochs, self.steps_per_epoch)
    self.means = metrics_lib.MeanAccumulator()
    self.timer = Throughput(config.batch_size)
    self.lead = lead
    self.pending = None  # (step, device metrics) of the step dispatched last
    self.final: dict[str, float] = {}
    self.progress: Progress | None = None

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
    self.fault.at("log", step)
    self.writer.write_scalars(step, scalars)
    self.progress.log(step, {"loss": scalars["train/loss"],
                             "img/s": scalars.get("images_per_sec", float("nan"))})
    self.final.update(scalars)

  def _evaluate(self, state, step: int) -> dict[str, float] | None:
    """Evaluates and logs; None if a stop signal interrupted it (single-process runs)."""
    def interrupted() -> bool:
      self.fault.at("eval", step)
      return jax.process_count() == 1 and bool(self.flag)

    with self.timer.paused():
      eval_metrics = evaluate(self.eval_fn, state, self.pipeline, interrupted)
    if eval_metrics is None:
      return None
    self.writer.write_scalars(step, eval_metrics)
    self.progress.message(f"eval step {step}: " + ", ".join(
        f"{k.split('/')[-1]} {v:.4f}" for k, v in eval_metrics.items()))
    self.final.update(eval_metrics)
    return eval_metrics

  def _save(self, state, step: int, eval_metrics: dict | None) -> None:
    metadata = _metadata(step, self.steps_per_epoch, eval_metrics)
    metadata["consecutive_skips"] = self.monitor.consecutive
    with self.timer.paused():
      self.checkpointer.save(step, state, config_json=self.config_json, metadata=metadata,
                             metrics=eval_metrics, data_state=_pipeline_state(self.pipeline))

  def _stop(self, state, step: int, eval_metrics: dict | None):
    """Saves (unless checkpoint ``step`` exists), waits for the write, raises Preempted."""
    self._save(state, step, eval_metrics)
    self.checkpointer.wait_until_finished()
    raise preemption.Preempted(step, self.flag.signal_name or "a signal to another process")

  def _eval_due(self, step: int) -> bool:
    return step % self.eval_every == 0 or step == self.total_steps

  def run(self, state, resumed_eval: dict | None) -> dict[str, float]:
    """Trains to ``total_steps``; ``resumed_eval``: the restored checkpoint's eval metrics."""
    step = int(jax.device_get(state.step))
    self.progress = Progress(total_steps=self.total_steps, initial_step=step, enabled=self.lead)
    eval_metrics = None
    try:
      if step < self.total_steps and _stop_requested(self.flag, True):
        # The signal came while the data loaded or the state was built or restored.
        raise preemption.Preempted(step, self.flag.signal_name or "a signal to another process",
                                   saved=step > 0)
      if resumed_eval == {} and step < self.total_steps and self._eval_due(step):
        # The checkpoint was saved when a signal interrupted this step's evaluation.
        eval_metrics = self._evaluate(state, step)
        if eval_metrics is None:
          self._stop(state, step, None)
      while step < self.total_steps:
        batch = self.fault.poison(self.pipeline.train_batch(step), step + 1)
        state, step_metrics = self.train_fn(state, batch)
        step += 1
        self.fault.at("step", step)
        self._fetch()  # step n-1: overlaps with step n on the device
        self.pending = (step, step_metrics)
        if not self.timer.started:
          # The session's first step compiles: wait for it before the clock starts.
          self._fetch()
        self.timer.count()
        self.progress.step(step)

        eval_due = self._eval_due(step)
        checkpoint_due = step % self.checkpoint_every == 0 or step == self.total_steps
        log_due = step % self.config.log_every_steps == 0 or eval_due or checkpoint_due
        # Single-process runs stop at once; multi-process ones agree below.
        stopping = jax.process_count() == 1 and bool(self.flag)
        if log_due or stopping:
          self._log(step)
        eval_metrics = None
        if eval_due and not stopping:
          eval_metrics = self._evaluate(state, step)
        # A signal during logging or evaluation stops here too.
        stopping = (stopping or (eval_due and eval_metrics is None)
                    or _stop_requested(self.flag, log_due))
        if stopping:
          self._log(step)  # the steps since the last log event, if any
          self._stop(state, step, eval_metrics)
        if checkpoint_due:
          self._save(state, step, eval_metrics if eval_due else None)

      if "eval/accuracy" not in self.final:
        # Resumed at the end of a finished run: evaluate the restored state.
        eval_metrics = evaluate(self.eval_fn, state, self.pipeline)
        self.final.update(eval_metrics)
    finally:
      self.progress.close()
    self.final.update(step=step, train_seconds=self.timer.total_seconds)
    if self.timer.total_images:
      self.final["images_per_sec"] = self.timer.total_images / max(self.timer.total_seconds, 1e-9)
    return self.final
