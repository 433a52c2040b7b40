"""Progress reporting: a tqdm bar on a terminal, plain periodic lines otherwise.

Log files and CI consoles garble carriage-return bars, so when stderr is not a
TTY the same information (step, loss, images/s, ETA) goes out as one line per
log event instead. :class:`Throughput` measures the images/s those lines report.
"""

from __future__ import annotations

import contextlib
import datetime
import sys
import time
from collections.abc import Mapping

from absl import logging


def _format_eta(seconds: float) -> str:
  return str(datetime.timedelta(seconds=max(0, round(seconds))))


def _format_scalars(scalars: Mapping[str, float]) -> str:
  return " ".join(f"{key}={value:.4g}" for key, value in scalars.items())


class Progress:
  """Reports training progress of one process.

  Args:
    total_steps: the step the run ends at.
    initial_step: the step the run starts (or resumes) from.
    enabled: False silences everything (processes other than 0).
    use_bar: force the bar on/off; None decides by whether stderr is a TTY.
  """

  def __init__(
      self, *, total_steps: int, initial_step: int, enabled: bool = True,
      use_bar: bool | None = None,
  ):
    self.total_steps = total_steps
    self.enabled = enabled
    self._start_step = initial_step
    self._start_time = time.perf_counter()
    self._bar = None
    if enabled and (sys.stderr.isatty() if use_bar is None else use_bar):
      from tqdm import tqdm  # noqa: PLC0415 (only on terminals)

      self._bar = tqdm(
          total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True,
          smoothing=0.1, desc="train",
      )

  def _eta(self, step: int) -> float:
    done = step - self._start_step
    elapsed = time.perf_counter() - self._start_time
    return elapsed / done * (self.total_steps - step) if done > 0 else float("nan")

  def step(self, step: int, postfix: Mapping[str, float] | None = None) -> None:
    """Advances the bar to ``step`` (cheap; call every step)."""
    if self._bar is not None:
      self._bar.update(step - self._bar.n)
      if postfix:
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

  def log(self, step: int, scalars: Mapping[str, float]) -> None:
    """One event's scalars: a line in the log (without a bar) or the bar's postfix."""
    if not self.enabled:
      return
    if self._bar is not None:
      self.step(step, scalars)
      return
    eta = self._eta(step)
    eta_text = _format_eta(eta) if eta == eta else "?"
    logging.info(
        "step %d/%d (%.0f%%) %s eta %s", step, self.total_steps,
        100.0 * step / self.total_steps, _format_scalars(scalars), eta_text,
    )

  def message(self, text: str) -> None:
    """A line that does not break the bar (evaluation results, checkpoints)."""
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.write(text)
    else:
      logging.info("%s", text)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None


class Throughput:
  """Training images/s between log events, excluding compilation, evals and saves.

  The first step of a session (which compiles) is not counted: timing starts
  when its metrics have been fetched, i.e. when the second step is dispatched.
  """

  def __init__(self, batch_size: int):
    self.batch_size = batch_size
    self.total_images = 0
    self.total_seconds = 0.0
    self._started = False
    self._t = 0.0
    self._images = 0
    self._seconds = 0.0

  @property
  def started(self) -> bool:
    return self._started

  def count(self) -> None:
    """Marks one more step done (call after its predecessor's metrics were fetched)."""
    now = time.perf_counter()
    if not self._started:
      self._started, self._t = True, now
      return
    self._images += self.batch_size
    self._seconds += now - self._t
    self._t = now

  @contextlib.contextmanager
  def paused(self):
    """Excludes the time spent inside the block (evaluation, saving)."""
    start = time.perf_counter()
    try:
      yield
    finally:
      self._t += time.perf_counter() - start

  def rates(self) -> dict[str, float]:
    """images/s since the previous call (empty before anything was timed)."""
    if not self._images:
      return {}
    rate = self._images / max(self._seconds, 1e-9)
    self.total_images += self._images
    self.total_seconds += self._seconds
    self._images, self._seconds = 0, 0.0
    return {"images_per_sec": rate}
