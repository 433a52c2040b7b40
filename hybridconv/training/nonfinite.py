"""Non-finite losses and gradients: stop the run, or skip the update a bounded number of times.

Inside the jitted step, :func:`finite_flags` reports whether the loss and each
gradient array are finite, and with ``config.nan_policy='skip'``
:func:`keep_if` keeps the old parameters, optimiser state and model state
(BatchNorm statistics included) when they are not -- a select, so the step stays
one compiled program with no host round trip. The host checks the flags of
metrics it has already fetched (step n-1's, after dispatching step n), so the
check never stalls the device; :class:`NonFiniteMonitor` then stops the run naming the
step and the offending quantities, or counts consecutive skips.

Every save and evaluation in the train loop first fetches all pending metrics,
so a poisoned state is never checkpointed.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

POLICIES = ("stop", "skip")
FLAGS_KEY = "nonfinite_flags"  # metrics entry holding the per-quantity finite flags
EXIT_CODE = 3  # exit status of the command line after a NonFiniteError


class NonFiniteError(FloatingPointError):
  """Training produced a non-finite loss or gradient (and the policy says stop)."""

  def __init__(self, message: str, step: int):
    super().__init__(message)
    self.step = step


def check_config(policy: str, max_consecutive_skips: int) -> None:
  if policy not in POLICIES:
    raise ValueError(f"config.nan_policy={policy!r} is not one of {POLICIES}")
  if max_consecutive_skips < 1:
    raise ValueError(f"config.max_consecutive_skips={max_consecutive_skips} must be >= 1")


def finite_flags(loss: jax.Array, grads) -> dict[str, jax.Array]:
  """``{'loss': bool[], 'grads': bool[n]}``: finiteness of the loss and of each gradient array."""
  leaves = jax.tree.leaves(grads)
  grads_ok = (
    jnp.stack([jnp.all(jnp.isfinite(g)) for g in leaves]) if leaves else jnp.ones((0,), bool)
  )
  return {"loss": jnp.isfinite(loss), "grads": grads_ok}


def all_finite(flags: dict[str, jax.Array]) -> jax.Array:
  return flags["loss"] & jnp.all(flags["grads"])


def keep_if(ok: jax.Array, new, old):
  """``new`` where ``ok`` else ``old``, leaf by leaf (both pytrees of one structure)."""
  return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


def _describe(step: int, scalars: dict, flags: dict, param_names: Sequence[str]) -> str:
  parts = []
  if not bool(flags["loss"]):
    parts.append(f"the loss is {float(scalars.get('train/loss', float('nan')))}")
  bad = [name for name, ok in zip(param_names, np.asarray(flags["grads"]), strict=False) if not ok]
  if bad:
    shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
    parts.append(
      f"the gradients of {len(bad)} of {len(param_names)} parameter arrays are non-finite ({shown})"
    )
  return f"step {step}: " + " and ".join(parts or ["non-finite values"])


class NonFiniteMonitor:
  """Host-side check of each step's finite flags.

  Args:
    policy: ``'stop'`` or ``'skip'`` (``config.nan_policy``).
    max_consecutive_skips: with ``'skip'``, stop when more steps than this in
      a row were non-finite.
    param_names: path names of the parameter arrays, in ``jax.tree.leaves`` order.
    consecutive: skips counted before a resume (from the checkpoint metadata).
  """

  def __init__(
    self, policy: str, max_consecutive_skips: int, param_names: Sequence[str], consecutive: int = 0
  ):
    check_config(policy, max_consecutive_skips)
    self.policy = policy
    self.max_consecutive_skips = max_consecutive_skips
    self.param_names = list(param_names)
    self.consecutive = consecutive

  def check(self, step: int, scalars: dict, flags: dict) -> None:
    """Raises :class:`NonFiniteError` as the policy says; ``flags`` are fetched host values."""
    if bool(flags["loss"]) and bool(np.all(flags["grads"])):
      self.consecutive = 0
      return
    what = _describe(step, scalars, flags, self.param_names)
    if self.policy == "stop":
      raise NonFiniteError(
        f"non-finite training at {what}; stopped without saving this state "
        "(config.nan_policy='stop'). Resuming restarts from the last checkpoint; lower "
        "config.optim.learning_rate, set config.optim.grad_clip_norm, or set "
        "config.nan_policy='skip' to skip such updates",
        step,
      )
    self.consecutive += 1
    if self.consecutive > self.max_consecutive_skips:
      raise NonFiniteError(
        f"non-finite training for {self.consecutive} consecutive steps, more than "
        f"config.max_consecutive_skips={self.max_consecutive_skips} (last at {what}); "
        "stopped without saving",
        step,
      )
