"""SIGTERM/SIGINT/SIGUSR1/SIGUSR2 turned into a flag the train loop checks at safe points.

Schedulers (SLURM, Kubernetes, preemptible VMs) send SIGTERM some seconds
before killing a job; SLURM's warning before a time limit or a preemption is
the signal of ``sbatch --signal`` (SIGUSR2 in the jobs ``hybridconv study
--executor=slurm`` submits, as submitit asks for; SIGUSR1 is the other usual
choice). Orbax only notices preemption after
``jax.distributed.initialize()``, so single-process runs need their own handler:
the signal sets a flag, and the loop saves a checkpoint at the next step
boundary and stops with :class:`Preempted`. A second signal of the same kind
falls through to the previous handler (so a double Ctrl-C still interrupts).

The handler is installed before the data is loaded, so a signal that arrives
while data loads, the step compiles, an evaluation runs or metrics are logged
is not lost: the loop checks the flag after each of these. Processes of a
multi-process run compare their flags at log events (``hybridconv.training.train``), so
all of them save the same step.
"""

from __future__ import annotations

import signal
import threading


def exit_code(signal_name: str) -> int:
  """``128 + signal number`` (143 for SIGTERM, 130 for SIGINT), as a shell reports it."""
  try:
    return 128 + signal.Signals[signal_name].value
  except KeyError:
    return 128 + signal.SIGTERM.value


class Preempted(Exception):
  """Training stopped on a signal after saving a checkpoint at ``step``."""

  def __init__(self, step: int, signal_name: str, saved: bool = True):
    what = "after saving a checkpoint" if saved else "before training began (nothing to save)"
    super().__init__(
      f"stopped by {signal_name} at step {step} {what}; run the same command again to resume"
    )
    self.step = step
    self.signal_name = signal_name


class PreemptionFlag:
  """Context manager installing handlers of ``SIGNALS`` that set ``self.signal_name``.

  Handlers are only installed from the main thread (Python allows no other);
  elsewhere the flag simply never fires. Previous handlers are restored on exit.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)

  def __init__(self):
    self.signal_name: str | None = None
    self._previous: dict[int, object] = {}

  def __bool__(self) -> bool:
    return self.signal_name is not None

  def _handle(self, signum, frame):
    if self.signal_name is not None:  # second signal: behave as before we were installed
      previous = self._previous.get(signum)
      if callable(previous):
        previous(signum, frame)
      raise KeyboardInterrupt
    self.signal_name = signal.Signals(signum).name

  def __enter__(self) -> PreemptionFlag:
    if threading.current_thread() is threading.main_thread():
      for signum in self.SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous.clear()
