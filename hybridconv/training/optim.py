"""Optimisers, learning-rate schedules and per-parameter masks built from ``config.optim``.

Masks are computed from the variable types and shapes in the NNX state, so they
follow any model without per-model code:

* weight decay applies only to kernels and weights (ndim >= 2) that are not
  parametric-kernel parameters: never to biases, norm scales/offsets or Gabor
  parameters (decaying an orientation or frequency towards zero has no meaning);
* the kernel learning-rate multiplier applies to parametric-kernel parameters,
  the ``nnx.Param``s that ``hybridconv.nn`` marks with ``kernel_parameter=True``
  metadata (Gabor theta, frequency, ...). Parametric filters are known to barely move from their
  initialisation at the learning rate that suits free kernels, so they get their
  own scale.

Fixed and random frozen kernels are not ``nnx.Param`` and never reach the
optimiser at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import optax
from flax import nnx

from hybridconv.nn import is_kernel_parameter
from hybridconv.training import durations

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")


def path_name(path) -> str:
  """``'a/b/c'`` for a JAX key path (dict keys, attributes, sequence indices): JAX's own namer.

  These names key the checksums in checkpoint metadata and the non-finite
  reports; ``tests/checkpointing_test.py`` pins a few so they stay readable.
  """
  return jax.tree_util.keystr(path, simple=True, separator="/")


def _is_variable(x) -> bool:
  return isinstance(x, nnx.Variable)


def _variable_mask(predicate: Callable[[nnx.Variable], bool], params):
  """A tree like ``params`` whose variables hold ``predicate(variable)`` instead of arrays."""
  return jax.tree.map(lambda v: v.replace(predicate(v)), params, is_leaf=_is_variable)


def kernel_param_mask(params):
  """Bool tree: True for parametric-kernel parameters (``hybridconv.nn.is_kernel_parameter``)."""
  return _variable_mask(is_kernel_parameter, params)


def weight_decay_mask(params):
  """Bool tree: True for weights that take weight decay (ndim >= 2, not parametric)."""
  return _variable_mask(lambda v: v.ndim >= 2 and not is_kernel_parameter(v), params)


def peak_learning_rate(optim_config, batch_size: int) -> float:
  """``optim.learning_rate``, scaled linearly from ``optim.reference_batch_size`` (when set) to
  the run's global ``batch_size``: computed here, not in config files, so a batch-size override
  keeps the recipe instead of silently keeping the old rate."""
  reference = optim_config.reference_batch_size
  rate = optim_config.learning_rate
  return rate * batch_size / reference if reference > 0 else rate


def learning_rate_schedule(optim_config, clock: durations.RunClock) -> Callable[[int], float]:
  """Linear warm-up from zero, then cosine decay, step decay or a constant.

  Args:
    optim_config: ``config.optim``.
    clock: the run's length (cosine decay reaches its floor at its end) and
      what ``warmup`` and ``step_at`` convert against.

  Returns:
    an optax schedule, step -> learning rate.
  """
  name = optim_config.schedule
  if name not in SCHEDULES:
    raise ValueError(f"config.optim.schedule={name!r} is not one of {SCHEDULES}")
  peak = peak_learning_rate(optim_config, clock.batch_size)
  total_steps = clock.total_steps
  warmup = min(clock.at(optim_config.warmup, "optim.warmup"), max(total_steps - 1, 0))
  if name == "cosine":
    return optax.warmup_cosine_decay_schedule(
      init_value=0.0,
      peak_value=peak,
      warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1),
      end_value=peak * optim_config.end_learning_rate_factor,
    )
  if name == "step":
    boundaries = {
      clock.at(when, "optim.step_at") - warmup: optim_config.step_factor
      for when in optim_config.step_at
    }
    after = optax.piecewise_constant_schedule(peak, boundaries)
  else:
    after = optax.constant_schedule(peak)
  if warmup == 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def check_config(optim_config) -> None:
  """Refuses an unknown optimiser or schedule and bad numbers, from ``config.optim`` alone."""
  if optim_config.name not in OPTIMIZERS:
    raise ValueError(f"config.optim.name={optim_config.name!r} is not one of {OPTIMIZERS}")
  if optim_config.schedule not in SCHEDULES:
    raise ValueError(f"config.optim.schedule={optim_config.schedule!r} is not one of {SCHEDULES}")
  for key in ("learning_rate", "weight_decay", "grad_clip_norm", "kernel_lr_multiplier"):
    value = getattr(optim_config, key)
    if not (math.isfinite(value) and value >= 0):
      raise ValueError(f"config.optim.{key}={value!r} must be a finite number >= 0")
  reference = optim_config.reference_batch_size
  if not (isinstance(reference, int) and reference >= 0):
    raise ValueError(
      f"config.optim.reference_batch_size={reference!r} must be an int >= 0 (0 = learning_rate "
      "as it is)"
    )
  durations.parse(optim_config.warmup, "optim.warmup", allow_never=True)
  for when in optim_config.step_at:
    durations.parse(when, "optim.step_at", allow_never=True)


def build_optimizer(
  optim_config, clock: durations.RunClock
) -> tuple[optax.GradientTransformation, Callable[[int], float]]:
  """The optax transformation for ``config.optim`` and its learning-rate schedule.

  SGD takes L2 weight decay on the gradient before momentum (the classic
  ResNet recipe); AdamW decays decoupled from the adaptive scaling. Gradient
  clipping, when on, sees the raw gradient.

  Returns:
    (transformation, schedule); the schedule is returned for logging.
  """
  name = optim_config.name
  check_config(optim_config)
  schedule = learning_rate_schedule(optim_config, clock)
  decay = optax.add_decayed_weights(optim_config.weight_decay, mask=weight_decay_mask)
  parts = []
  if optim_config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(optim_config.grad_clip_norm))
  if name == "sgd":
    if optim_config.weight_decay > 0:
      parts.append(decay)
    if optim_config.momentum > 0:
      parts.append(optax.trace(decay=optim_config.momentum, nesterov=optim_config.nesterov))
  else:
    parts.append(optax.scale_by_adam(b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps))
    if optim_config.weight_decay > 0:
      parts.append(decay)
  if optim_config.kernel_lr_multiplier != 1.0:
    parts.append(optax.masked(optax.scale(optim_config.kernel_lr_multiplier), kernel_param_mask))
  parts.append(optax.scale_by_learning_rate(schedule))
  return optax.chain(*parts), schedule
