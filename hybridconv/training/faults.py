"""Test-only fault injection: ``HYBRIDCONV_FAULT`` makes a run die, get signalled or see NaN.

The reliability guarantees (exact resumption after SIGKILL, checkpoint on
SIGTERM, a half-written checkpoint ignored, NaN handling) are only worth as
much as the tests that break a real run at a precise point. An outside watcher
cannot hit "inside the write of checkpoint 8" or "during the evaluation at step
4" reliably, so the train loop calls :meth:`Faults.at` at those points and this
module acts when the environment asks for it. Unset (the normal case) every
hook is one dictionary lookup that finds nothing.

``HYBRIDCONV_FAULT`` holds comma-separated faults ``<action>@<point>``:

* actions: ``kill`` (SIGKILL to this process), ``sigterm``, ``sigint``, and
  ``nan`` (replace the images of the train batch with NaN; point ``step`` only);
* points, with a step ``N`` or an inclusive range ``N-M``:
  ``step:N`` right after train step N was dispatched (for ``nan``: the batch of
  the update that yields step N); ``eval:N`` inside the evaluation at step N,
  after its first batch; ``log:N`` while the scalars of step N are written;
  ``summary:N`` right after the filter summary of step N was written;
  ``save:N`` inside the write of checkpoint N, after its arrays are on disk and
  before it is committed; and, without a step, ``compile`` while the train
  step is being compiled (between tracing and the backend compiler) and
  ``data`` right after the dataset was loaded, before the model is built.

Example: ``HYBRIDCONV_FAULT=kill@step:6 python -m hybridconv.main ...``.
"""

from __future__ import annotations

import dataclasses
import os
import signal

ENV_VAR = "HYBRIDCONV_FAULT"
ACTIONS = ("kill", "sigterm", "sigint", "nan")
POINTS = ("step", "eval", "log", "summary", "save", "compile", "data")
_STEPLESS = ("compile", "data")
_SIGNALS = {"kill": signal.SIGKILL, "sigterm": signal.SIGTERM, "sigint": signal.SIGINT}
# The jitted train step's name as JAX reports it in compile events.
TRAIN_STEP_NAME = "jit(train_step)"
_LOWERED_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"


@dataclasses.dataclass(frozen=True)
class Fault:
  action: str
  point: str
  first: int = 0
  last: int = 0

  def due(self, point: str, step: int) -> bool:
    return point == self.point and self.first <= step <= self.last


def parse(spec: str) -> tuple[Fault, ...]:
  """Faults of a ``HYBRIDCONV_FAULT`` value; one ValueError naming what is wrong."""
  faults = []
  for item in filter(None, (part.strip() for part in spec.split(","))):
    action, _, where = item.partition("@")
    point, _, steps = where.partition(":")
    if action not in ACTIONS or point not in POINTS:
      raise ValueError(
        f"{ENV_VAR}={spec!r}: {item!r} is not <action>@<point>[:<step>] with an "
        f"action in {ACTIONS} and a point in {POINTS}"
      )
    if action == "nan" and point != "step":
      raise ValueError(f"{ENV_VAR}={spec!r}: 'nan' only works at point 'step'")
    if point in _STEPLESS:
      faults.append(Fault(action, point))
      continue
    first, _, last = steps.partition("-")
    if not first.isdigit() or not (last or first).isdigit():
      raise ValueError(
        f"{ENV_VAR}={spec!r}: {item!r} needs a step N or a range N-M after '{point}:'"
      )
    faults.append(Fault(action, point, int(first), int(last or first)))
  return tuple(faults)


class Faults:
  """The faults asked for; every hook is a no-op when there are none."""

  def __init__(self, faults: tuple[Fault, ...] = ()):
    self.faults = faults
    self._points = {fault.point for fault in faults}

  def __bool__(self) -> bool:
    return bool(self.faults)

  def at(self, point: str, step: int) -> None:
    """Delivers the signals due at ``point`` of ``step`` (SIGKILL does not return)."""
    if point not in self._points:
      return
    for fault in self.faults:
      if fault.action in _SIGNALS and fault.due(point, step):
        os.kill(os.getpid(), _SIGNALS[fault.action])

  def poison(self, batch: dict, step: int) -> dict:
    """``batch`` with NaN images if ``nan@step`` covers ``step`` (the step it yields)."""
    if "step" not in self._points or not any(
      f.action == "nan" and f.due("step", step) for f in self.faults
    ):
      return batch
    import jax.numpy as jnp  # noqa: PLC0415 (only when poisoning)

    return {**batch, "image": jnp.full_like(batch["image"], jnp.nan, dtype=jnp.float32)}

  def install(self) -> None:
    """Makes these the faults that the hooks inside JAX and orbax consult."""
    global _active
    _active = self
    if "compile" in self._points:
      _arm_compile()
    if "save" in self._points:
      _arm_save()


def from_env() -> Faults:
  """The faults of ``$HYBRIDCONV_FAULT`` (none when unset), armed."""
  faults = Faults(parse(os.environ.get(ENV_VAR, "")))
  faults.install()
  return faults


# The hooks inside JAX and orbax are installed once per process and act for the
# faults of the latest ``from_env()`` call (none after a run without faults).
_active: Faults | None = None
_armed: set[str] = set()


def _arm_compile() -> None:
  if "compile" in _armed:
    return
  import jax  # noqa: PLC0415

  def listener(event: str, duration: float, **kwargs) -> None:
    del duration
    faults = _active
    if event != _LOWERED_EVENT or kwargs.get("fun_name") != TRAIN_STEP_NAME or not faults:
      return
    for fault in faults.faults:
      if fault.point == "compile" and fault.action in _SIGNALS:
        os.kill(os.getpid(), _SIGNALS[fault.action])

  jax.monitoring.register_event_duration_secs_listener(listener)
  _armed.add("compile")


def _arm_save() -> None:
  """Wraps orbax's commit (the atomic rename of ``<step>.orbax-checkpoint-tmp-*``)."""
  if "save" in _armed:
    return
  from orbax.checkpoint._src.path import atomicity  # noqa: PLC0415

  cls = atomicity.AtomicRenameTemporaryPath
  original = cls.finalize

  async def finalize(self, *args, **kwargs):
    name = self.get_final().name
    if _active and name.isdigit():  # the step directory, not one of its items
      _active.at("save", int(name))
    return await original(self, *args, **kwargs)

  cls.finalize = finalize
  _armed.add("save")
