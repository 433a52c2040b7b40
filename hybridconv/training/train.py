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

Faults a run is built to survive (tests in ``tests/reliability_*_test.py``; the
order of work within a step that they rest on is in ``hybridconv.training.loop``):
SIGKILL anywhere (resume from the last checkpoint, bit-identical result);
SIGTERM/SIGINT (checkpoint at the next step boundary, also when the signal came
during compilation, evaluation or logging, then :class:`preemption.Preempted`);
damaged checkpoints (:meth:`checkpointing.Checkpointer.restore_latest`);
non-finite losses or gradients (:mod:`hybridconv.training.nonfinite`); a failing or
hanging extra metric writer (:class:`writers.BackgroundWriter`).
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import optax
from absl import logging
from flax import nnx

from hybridconv import data, models, run_layout, sharding, tracking
from hybridconv.tracking import snapshots, writers
from hybridconv.training import (
  checkpointing,
  durations,
  faults,
  nonfinite,
  optim,
  preemption,
  provenance,
  validation,
)
from hybridconv.training import loop as train_loop
from hybridconv.training import metrics as metrics_lib
from hybridconv.training import state as ts
from hybridconv.training import workdir as workdir_lib
from hybridconv.training.cadence import Cadence

# ---------------------------------------------------------------------------
# Set-up (validation in hybridconv.training.validation, all before anything is compiled)


def run_clock(config, steps_per_epoch: int) -> durations.RunClock:
  """The run's length and what its durations convert against (``config.train_for`` etc.)."""
  return durations.run_clock(
    config.train_for, steps_per_epoch=steps_per_epoch, batch_size=config.batch_size
  )


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
      config.model,
      num_classes=num_classes,
      image_shape=tuple(image_shape),
      rngs=nnx.Rngs(params=key, dropout=jax.random.fold_in(key, 1)),
      dtype=None if dtype == jnp.float32 else dtype,
      seed=config.seed,
    )

  try:
    abstract_model = nnx.eval_shape(build, init_key)
  except ValueError as error:  # bad kernel specs, group sizes, image sizes
    raise ValueError(f"{error} {validation.model_context(config.model, image_shape)}") from error
  model_fns = ts.model_functions(abstract_model, dtype)
  validation.check_model(
    config.model, abstract_model, model_fns, image_shape=tuple(image_shape), num_classes=num_classes
  )

  # Keys are arguments, not closed-over constants: XLA would otherwise try to
  # constant-fold the random initialisation, which compiles very slowly.
  @functools.partial(jax.jit, out_shardings=sharding.replicated(mesh))
  def init(init_key, train_key):
    _, params, _, model_state = ts.split_model(build(init_key))
    return ts.TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      model_state=model_state,
      opt_state=tx.init(params),
      rng=jax.random.key_data(train_key),
    )

  return model_fns, init(init_key, train_key)


# ---------------------------------------------------------------------------
# The step functions (pure; jitted in train_and_evaluate)


def train_step(
  state: ts.TrainState,
  batch,
  *,
  model_fns: ts.ModelFunctions,
  tx,
  schedule,
  label_smoothing: float,
  skip_nonfinite: bool = False,
):
  """One optimiser update on a global batch; returns the new state and scalar metrics.

  The metrics also hold ``nonfinite.FLAGS_KEY``: whether the loss and each
  gradient array are finite. With ``skip_nonfinite`` a non-finite step keeps
  the old params, optimiser state and model state (BatchNorm statistics) and
  only advances ``step``, so the batch is dropped and the optimiser's own
  count (hence its schedule) does not move.
  """
  key = ts.step_key(state)

  def loss_fn(params):
    logits, model_state = model_fns.apply(
      params, state.model_state, batch["image"], train=True, key=key
    )
    losses = metrics_lib.cross_entropy(logits, batch["label"], label_smoothing=label_smoothing)
    return jnp.mean(losses), (logits, model_state)

  (loss, (logits, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  flags = nonfinite.finite_flags(loss, grads)
  finite = nonfinite.all_finite(flags)
  if skip_nonfinite:
    params, opt_state, model_state = nonfinite.keep_if(
      finite, (params, opt_state, model_state), (state.params, state.opt_state, state.model_state)
    )
  scalars = {
    "train/loss": loss,
    "train/accuracy": jnp.mean(metrics_lib.top_k_correct(logits, batch["label"], 1)),
    "train/learning_rate": schedule(state.step),
    "train/nonfinite": 1.0 - finite.astype(jnp.float32),
    nonfinite.FLAGS_KEY: flags,
  }
  # Global and per-layer gradient, parameter and update norms.
  scalars.update(tracking.scalar_metrics(grads, params, updates))
  new_state = state.replace(
    step=state.step + 1, params=params, model_state=model_state, opt_state=opt_state
  )
  return new_state, scalars


def eval_step(params, model_state, batch, *, model_fns: ts.ModelFunctions):
  """Sums of loss and correct predictions over the real examples of one batch."""
  logits, _ = model_fns.apply(
    params, model_state, batch["image"], train=False, key=jax.random.key(0)
  )
  return metrics_lib.eval_sums(logits, batch["label"], batch["mask"])


# ---------------------------------------------------------------------------
# Putting it together (the loop itself is hybridconv.training.loop)


def train_and_evaluate(
  config, workdir: str, *, writer: writers.MetricWriter | None = None
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
    ValueError: a bad config or workdir, a workdir in use by another run, a
      config that changes the model of the workdir's checkpoints, or bad data
      -- before anything is compiled.
  """
  sharding.maybe_initialize_distributed(config.distributed)
  mesh = sharding.make_mesh()
  workdir = os.path.abspath(workdir)
  validation.validate_config(config, mesh, workdir)  # every section, before any work
  with workdir_lib.exclusive(workdir):  # held until the run ends, however it ends
    return _run(config, workdir, mesh, writer)


def _run(config, workdir: str, mesh, writer: writers.MetricWriter | None) -> dict[str, float]:
  """``train_and_evaluate`` once the config is checked and the workdir is locked."""
  is_main_process = jax.process_index() == 0
  fault = faults.from_env()
  checkpoint_dir = os.path.join(workdir, run_layout.CHECKPOINT_DIR)
  config_json = workdir_lib.config_json(config)
  if checkpointing.existing_steps(checkpoint_dir):
    workdir_lib.check_resume(workdir, config_json, allow_change=config.allow_config_change)

  # From here on a signal stops the run at the next safe point, also one that
  # arrives while the data loads or the step compiles.
  with preemption.PreemptionFlag() as flag:
    pipeline = data.build_pipeline(
      config.data,
      global_batch_size=config.batch_size,
      eval_batch_size=config.eval_batch_size,
      seed=config.seed,
      mesh=mesh,
    )
    fault.at("data", 0)
    if checkpointing.existing_steps(checkpoint_dir):
      workdir_lib.check_train_subset(workdir, pipeline.train_subset)
    steps_per_epoch = pipeline.steps_per_epoch
    clock = run_clock(config, steps_per_epoch)
    total_steps = clock.total_steps
    tx, schedule = optim.build_optimizer(config.optim, clock)
    model_fns, state = create_train_state(
      config,
      num_classes=pipeline.num_classes,
      image_shape=pipeline.image_shape,
      mesh=mesh,
      tx=tx,
    )
    os.makedirs(workdir, exist_ok=True)
    workdir_lib.write_config(workdir, config_json)
    workdir_lib.write_train_subset(workdir, pipeline.train_subset)
    provenance.record_start(workdir)
    if is_main_process and getattr(pipeline, "class_names", None):
      data.write_class_names(workdir, pipeline.class_names)

    replicated, batch_sharded = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    train_fn = jax.jit(
      functools.partial(
        train_step,
        model_fns=model_fns,
        tx=tx,
        schedule=schedule,
        label_smoothing=config.label_smoothing,
        skip_nonfinite=config.nan_policy == "skip",
      ),
      in_shardings=(replicated, batch_sharded),
      out_shardings=(replicated, replicated),
      donate_argnums=0,
    )
    eval_fn = jax.jit(
      functools.partial(eval_step, model_fns=model_fns),
      in_shardings=(replicated, replicated, batch_sharded),
      out_shardings=replicated,
    )
    param_names = [
      optim.path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(state.params)[0]
    ]
    checkpointer = checkpointing.Checkpointer(
      checkpoint_dir,
      keep=config.checkpoint.keep,
      keep_best=config.checkpoint.keep_best,
      async_save=config.checkpoint.async_save,
    )
    with checkpointer:
      # The loop's one logger: JSON lines in the workdir; W&B unless disabled and
      # ``writer``, each behind a bounded background thread (writers.BackgroundWriter).
      logger = tracking.make_logger(
        config.tracking,
        workdir,
        is_main_process=is_main_process,
        config=config_json,
        extra=[writer] if writer else [],
      )
      try:
        restored = checkpointer.restore_latest(ts.abstract_like(state))
        metadata = {}
        if restored is not None:
          state, metadata = restored.state, restored.metadata
          if restored.data_state is not None:
            pipeline.set_state(restored.data_state)
          logging.info("resumed from checkpoint %d in %s", restored.step, checkpointer.directory)
        elif is_main_process:  # a new run: which initial values each layer got
          provenance.record_initial_values(
            workdir, tracking.local_replica(state.params), tracking.local_replica(state.model_state)
          )
        monitor = nonfinite.NonFiniteMonitor(
          config.nan_policy,
          config.max_consecutive_skips,
          param_names,
          consecutive=metadata.get("consecutive_skips", 0),
        )
        cadence = Cadence.from_config(config, clock)
        loop = train_loop.TrainLoop(
          cadence,
          pipeline=pipeline,
          train_fn=train_fn,
          eval_fn=eval_fn,
          checkpointer=checkpointer,
          logger=logger,
          flag=flag,
          fault=fault,
          monitor=monitor,
          config_json=config_json,
          batch_size=config.batch_size,
          is_main_process=is_main_process,
          log_checkpoints=is_main_process and config.tracking.log_checkpoints,
          summarize=_filter_summarizer(
            cadence, config, model_fns, logger, workdir, is_main_process
          ),
        )
        final = loop.run(state, resumed=metadata if restored else None)
        if is_main_process and config.tracking.animation:  # after the loop only: not Preempted
          tracking.log_animations(logger, workdir, final["step"])  # workdir and W&B
      finally:
        logger.close()
  if is_main_process:
    workdir_lib.write_summary(workdir, final, total_steps=total_steps)
  return final


def _filter_summarizer(
  cadence: Cadence, config, model_fns: ts.ModelFunctions, logger, workdir: str, is_main_process
):
  """``summarize(state, step)`` logging every conv layer's filters, or None when off."""
  if not is_main_process or cadence.filters_every <= 0:
    return None
  tracker = tracking.FilterTracker(
    logger,
    gabor_fit=config.tracking.gabor_fit,
    state_path=os.path.join(workdir, run_layout.GABOR_STATE_FILE),
  )

  def summarize(state: ts.TrainState, step: int) -> None:
    rng_state = ts.fresh_rng_state(model_fns.abstract_rng_state, jax.random.key(0))
    model = nnx.merge(
      model_fns.eval_graphdef,
      tracking.local_replica(state.params),
      rng_state,
      tracking.local_replica(state.model_state),
    )
    tracker(model, step)
    snapshots.save_snapshot(workdir, model, step)

  return summarize
