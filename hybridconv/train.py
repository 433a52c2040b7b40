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
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils

import hybridconv
from hybridconv import checkpointing, data, models, optim, preemption, sharding, tracking, writers
from hybridconv import metrics as metrics_lib
from hybridconv import train_state as ts
from hybridconv.progress import Progress, Throughput

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


# ---------------------------------------------------------------------------
# Validation and set-up (all before anything is compiled)


def validate_config(config, mesh) -> None:
  """Refuses settings the run cannot honour, each with one message naming the key."""
  sharding.check_batch_size("batch_size", config.batch_size, mesh)
  sharding.check_batch_size("eval_batch_size", config.eval_batch_size, mesh)
  ts.compute_dtype(config.compute_dtype)
  if not (config.num_epochs > 0 or config.num_train_steps > 0):
    raise ValueError(
        f"config.num_epochs={config.num_epochs} and config.num_train_steps="
        f"{config.num_train_steps}: one of them must be > 0"
    )
  for key in ("log_every_steps",):
    if getattr(config, key) < 1:
      raise ValueError(f"config.{key}={getattr(config, key)} must be >= 1")
  for key, value in (
      ("eval_every_epochs", config.eval_every_epochs),
      ("checkpoint.every_epochs", config.checkpoint.every_epochs),
  ):
    if not value > 0:
      raise ValueError(f"config.{key}={value} must be > 0 (epochs, may be fractional)")
  if not 0 <= config.label_smoothing < 1:
    raise ValueError(f"config.label_smoothing={config.label_smoothing} must be in [0, 1)")


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

  fns = ts.model_functions(nnx.eval_shape(build, init_key), dtype)

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
               label_smoothing: float):
  """One optimiser update on a global batch; returns the new state and scalar metrics."""
  key = ts.step_key(state)

  def loss_fn(params):
    logits, model_state = fns.apply(params, state.model_state, batch["image"], train=True,
                                    key=key)
    losses = metrics_lib.cross_entropy(logits, batch["label"], label_smoothing=label_smoothing)
    return jnp.mean(losses), (logits, model_state)

  (loss, (logits, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  scalars = {
      "train/loss": loss,
      "train/accuracy": jnp.mean(metrics_lib.top_k_correct(logits, batch["label"], 1)),
      "train/learning_rate": schedule(state.step),
  }
  # Global and per-layer gradient, parameter and update norms.
  scalars.update(tracking.scalar_metrics(grads, params, updates))
  new_state = state.replace(
      step=state.step + 1, params=params, model_state=model_state, opt_state=opt_state
  )
  return new_state, scalars


def eval_step(params, model_state, batch, *, fns: ts.ModelFunctions):
  """Sums of loss and correct predictions over the real examples of one batch."""
  logits, _ = fns.apply(params, model_state, batch["image"], train=False,
                        key=jax.random.key(0))
  return metrics_lib.eval_sums(logits, batch["label"], batch["mask"])


def evaluate(eval_fn, state: ts.TrainState, pipeline) -> dict[str, float]:
  """Test-split loss, top-1 (and top-5) accuracy of ``state``."""
  sums = None
  for batch in pipeline.eval_batches():
    out = eval_fn(state.params, state.model_state, batch)
    sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
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


def _write_config(config, workdir: str) -> dict:
  config_json = json.loads(config.to_json_best_effort())
  if jax.process_index() == 0:
    with open(os.path.join(workdir, CONFIG_FILE), "w", encoding="utf-8") as f:
      json.dump(config_json, f, indent=2, sort_keys=True)
  return config_json


def _pipeline_state(pipeline):
  return pipeline.get_state() if hasattr(pipeline, "get_state") else None


def train_and_evaluate(config, workdir: str, *, writer: writers.MetricWriter | None = None
                       ) -> dict[str, float]:
  """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints) and evaluates.

  Args:
    config: a locked ``ml_collections.ConfigDict`` with the keys of
      ``configs/default.py``.
    workdir: run directory: ``config.json``, ``metrics.jsonl``, ``checkpoints/``.
    writer: extra metric writer (e.g. an experiment tracker); the JSON lines
      file is always written.

  Returns:
    the final metrics: ``step``, the last ``train/*`` means, ``eval/*`` of the
    final evaluation, ``images_per_sec`` (training throughput, compilation
    excluded) and ``train_seconds``.

  Raises:
    preemption.Preempted: stopped by SIGTERM/SIGINT after saving a checkpoint.
  """
  sharding.maybe_initialize_distributed(config.distributed)
  mesh = sharding.make_mesh()
  validate_config(config, mesh)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  lead = jax.process_index() == 0

  pipeline = data.build_pipeline(
      config.data, global_batch_size=config.batch_size,
      eval_batch_size=config.eval_batch_size, seed=config.seed, mesh=mesh,
  )
  steps_per_epoch = pipeline.steps_per_epoch
  total_steps = num_train_steps(config, steps_per_epoch)
  tx, schedule = optim.build_optimizer(
      config.optim, total_steps=total_steps, steps_per_epoch=steps_per_epoch
  )
  fns, state = create_train_state(
      config, num_classes=pipeline.num_classes, image_shape=pipeline.image_shape,
      mesh=mesh, tx=tx,
  )
  config_json = _write_config(config, workdir)
  # JSON lines in the workdir plus W&B (unless disabled); a no-op off process 0.
  logger = tracking.make_logger(config.tracking, workdir, is_main_process=lead, config=config_json)
  writer = writers.MultiWriter([logger] + ([writer] if writer is not None else []))

  replicated, batch_sharded = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  train_fn = jax.jit(
      functools.partial(train_step, fns=fns, tx=tx, schedule=schedule,
                        label_smoothing=config.label_smoothing),
      in_shardings=(replicated, batch_sharded), out_shardings=(replicated, replicated),
      donate_argnums=0,
  )
  eval_fn = jax.jit(
      functools.partial(eval_step, fns=fns),
      in_shardings=(replicated, replicated, batch_sharded), out_shardings=replicated,
  )
  checkpointer = checkpointing.Checkpointer(
      os.path.join(workdir, CHECKPOINT_DIR), keep=config.checkpoint.keep,
      keep_best=config.checkpoint.keep_best, async_save=config.checkpoint.async_save,
  )
  with checkpointer, preemption.PreemptionFlag() as flag:
    try:
      latest = checkpointer.latest_step()
      if latest is not None:
        state, _, data_state = checkpointer.restore(latest, ts.abstract_like(state))
        if data_state is not None:
          pipeline.set_state(data_state)
        logging.info("resumed from checkpoint %d in %s", latest, checkpointer.directory)
      final = _train_loop(
          config, state, pipeline=pipeline, train_fn=train_fn, eval_fn=eval_fn,
          checkpointer=checkpointer, writer=writer, flag=flag, total_steps=total_steps,
          config_json=config_json, lead=lead, fns=fns, logger=logger, workdir=workdir,
      )
    finally:
      writer.close()
  if lead and config.tracking.animation:  # not in `finally`: it must not mask Preempted
    tracking.write_animations(workdir)
  return final


def _filter_summary(tracker, fns: ts.ModelFunctions, state: ts.TrainState, step: int) -> None:
  """Logs the filters of ``state``'s model (this process's replica) at ``step``."""
  rng_state = ts.fresh_rng_state(fns.abstract_rng_state, jax.random.key(0))
  model = nnx.merge(fns.eval_graphdef, tracking.local_replica(state.params), rng_state,
                    tracking.local_replica(state.model_state))
  tracker(model, step)


def _stop_requested(flag: preemption.PreemptionFlag, log_due: bool) -> bool:
  """Whether to save and stop now; every process must give the same answer.

  One process checks its own flag every step. Several processes must stop at
  the same step (the save is collective), so they compare flags -- one small
  all-gather -- only at log events, which every process reaches together.
  """
  if jax.process_count() == 1:
    return bool(flag)
  if not log_due:
    return False
  flags = multihost_utils.process_allgather(np.asarray(bool(flag), np.int32))
  return bool(np.any(flags))


def _train_loop(config, state, *, pipeline, train_fn, eval_fn, checkpointer, writer, flag,
                total_steps: int, config_json: dict, lead: bool, fns, logger, workdir: str
                ) -> dict[str, float]:
  """Runs steps from ``state.step`` to ``total_steps`` with logging, evals and checkpoints."""
  steps_per_epoch = pipeline.steps_per_epoch
  eval_every = every_steps(config.eval_every_epochs, steps_per_epoch)
  checkpoint_every = every_steps(config.checkpoint.every_epochs, steps_per_epoch)
  step = int(jax.device_get(state.step))
  progress = Progress(total_steps=total_steps, initial_step=step, enabled=lead)
  means = metrics_lib.MeanAccumulator()
  final: dict[str, float] = {}
  eval_metrics: dict[str, float] | None = None
  pending = None  # device metrics of the step dispatched last
  timer = Throughput(config.batch_size)
  filters_every = config.tracking.filters_every_steps
  tracker = tracking.FilterTracker(
      logger, gabor_fit=config.tracking.gabor_fit,
      state_path=os.path.join(workdir, "filters", "initial_gabor_parameters.npz"),
  ) if lead and filters_every > 0 else None

  def save(at_step: int, with_eval: dict | None):
    checkpointer.save(
        at_step, state, config_json=config_json,
        metadata=_metadata(at_step, steps_per_epoch, with_eval), metrics=with_eval,
        data_state=_pipeline_state(pipeline),
    )

  try:
    if tracker is not None and step == 0:
      _filter_summary(tracker, fns, state, 0)
    while step < total_steps:
      batch = pipeline.train_batch(step)
      state, step_metrics = train_fn(state, batch)
      step += 1
      if pending is not None:
        means.add(jax.device_get(pending))  # step n-1: overlaps with step n on the device
      pending = step_metrics
      if not timer.started:
        # The session's first step compiles: wait for it before the clock starts.
        means.add(jax.device_get(pending))
        pending = None
      timer.count()
      progress.step(step)

      eval_due = step % eval_every == 0 or step == total_steps
      checkpoint_due = step % checkpoint_every == 0 or step == total_steps
      log_due = step % config.log_every_steps == 0 or eval_due or checkpoint_due
      stop = _stop_requested(flag, log_due)
      if log_due or stop:
        if pending is not None:
          means.add(jax.device_get(pending))
          pending = None
        scalars = means.pop()
        scalars.update(timer.rates())
        scalars["epoch"] = step / steps_per_epoch
        if not tracking.is_due(step, config.tracking.scalars_every_steps, total_steps):
          scalars = tracking.without_layer_norms(scalars)
        writer.write_scalars(step, scalars)
        progress.log(step, {"loss": scalars["train/loss"],
                            "img/s": scalars.get("images_per_sec", float("nan"))})
        final.update(scalars)
      if eval_due:
        with timer.paused():
          eval_metrics = evaluate(eval_fn, state, pipeline)
        writer.write_scalars(step, eval_metrics)
        progress.message(f"eval step {step}: " + ", ".join(
            f"{k.split('/')[-1]} {v:.4f}" for k, v in eval_metrics.items()))
        final.update(eval_metrics)
      if tracker is not None and tracking.is_due(step, filters_every, total_steps):
        with timer.paused():
          _filter_summary(tracker, fns, state, step)
      if checkpoint_due or stop:
        with timer.paused():
          save(step, eval_metrics if eval_due else None)
        if config.tracking.log_checkpoints:
          logger.log_artifact(f"file://{os.path.join(checkpointer.directory, str(step))}",
                              "checkpoints", "model")
      if stop:
        checkpointer.wait_until_finished()
        raise preemption.Preempted(step, flag.signal_name or "a signal to another process")

    if eval_metrics is None or "eval/accuracy" not in final:
      # Resumed at the end of a finished run: evaluate the restored state.
      eval_metrics = evaluate(eval_fn, state, pipeline)
      final.update(eval_metrics)
  finally:
    progress.close()
  final.update(step=step, train_seconds=timer.total_seconds)
  if timer.total_images:
    final["images_per_sec"] = timer.total_images / max(timer.total_seconds, 1e-9)
  return final
