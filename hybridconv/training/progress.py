"""Progress reporting: a tqdm bar on a terminal, plain periodic lines otherwise.

Log files and CI consoles garble carriage-return bars, so when stderr is not a
TTY the same information (step, loss, images/s, latest eval accuracy, ETA)
goes out as one line per log event instead. :class:`Throughput` measures the
images/s those lines report.

What a person sees, in order: a ``compiling the train step ...`` line as soon
as the first step is dispatched, a line with the time that took once it has
run, and only then the bar (or the first plain line). The bar and the ETA
start at that point, so compilation (often most of a short run's wall time)
does not enter the rate, and time spent evaluating, saving or summarising
filters is taken out of it too (:meth:`Progress.paused`).

While the bar is shown, stdout, stderr and every logging handler that writes
to them go through :class:`_BarStream`: whole lines are printed above the bar
(clear the bar, write the line, redraw the bar) and partial writes wait for
their newline, so the W&B banner or an absl log line is never glued onto the
bar's line. The final 100% bar is drawn once, when the bar is closed, with
the rate of the training steps alone.
"""

from __future__ import annotations

import contextlib
import datetime
import logging as py_logging
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, TextIO

from absl import logging


def _format_eta(seconds: float) -> str:
  return str(datetime.timedelta(seconds=max(0, round(seconds))))


def _format_scalars(scalars: Mapping[str, float]) -> str:
  return " ".join(f"{key}={value:.4g}" for key, value in scalars.items())


class _BarStream:
  """A text stream that prints whole lines above a tqdm bar (see the module docstring).

  Partial writes are buffered until their newline (or :meth:`flush_partial`);
  attributes other than ``write`` and ``flush`` are the real stream's, so
  ``isatty()`` and ``fileno()`` still describe the terminal.
  """

  def __init__(self, progress: Progress, stream: TextIO):
    self._progress = progress
    self._stream = stream
    self._pending = ""
    self._lock = threading.Lock()

  def write(self, text: str) -> int:
    with self._lock:
      self._pending += text
      head, newline, self._pending = self._pending.rpartition("\n")
    if newline:
      self._progress._print_above(head + newline)
    return len(text)

  def flush(self) -> None:
    """Lines are written as they complete; a partial line waits for its end."""

  def flush_partial(self) -> None:
    with self._lock:
      rest, self._pending = self._pending, ""
    if rest:
      self._progress._print_above(rest + "\n")

  def __getattr__(self, name: str) -> Any:
    return getattr(self._stream, name)


class Progress:
  """Reports training progress of one process.

  Call :meth:`compiling` before the session's first step is dispatched and
  :meth:`compiled` when it has run; :meth:`step` every step, :meth:`log` at log
  events, :meth:`evaluated` after an evaluation, :meth:`close` at the end.

  Args:
    total_steps: the step the run ends at.
    initial_step: the step the run starts (or resumes) from.
    enabled: False silences everything (processes other than 0).
    use_bar: force the bar on/off; None decides by whether stderr is a TTY.
  """

  def __init__(
    self,
    *,
    total_steps: int,
    initial_step: int,
    enabled: bool = True,
    use_bar: bool | None = None,
    remaining_events=None,
  ):
    self.total_steps = total_steps
    # remaining_events(step) -> {kind: count of such pauses still to come} (the loop's
    # cadence); with it the ETA adds each kind's measured mean duration per event.
    self._remaining_events = remaining_events
    self._event_seconds: dict[str, list[float]] = {}
    self.enabled = enabled
    self._use_bar = enabled and (sys.stderr.isatty() if use_bar is None else use_bar)
    self._start_step = initial_step
    self._start_time = time.perf_counter()
    self._compile_start: float | None = None
    self._paused_seconds = 0.0
    self._postfix: dict[str, float] = {}
    self._bar = None
    self._out: TextIO = sys.stderr
    self._redirected: list[tuple[Any, str, Any]] = []  # (object, attribute, original)

  # -- compilation and the start of the clock -----------------------------------

  def compiling(self) -> None:
    """Says that the first step is being compiled (before it is dispatched)."""
    self._compile_start = time.perf_counter()
    self.message("compiling the train step ...")

  def compiled(self, step: int) -> None:
    """The first step has run: reports how long that took and starts the clock (and bar)."""
    if self._compile_start is not None:
      seconds = time.perf_counter() - self._compile_start
      self.message(f"compiled the train step and ran step {step} in {seconds:.1f} s")
    self._start_step, self._start_time, self._paused_seconds = step, time.perf_counter(), 0.0
    if self._use_bar and self._bar is None and step < self.total_steps:
      self._open_bar(step)

  def _open_bar(self, step: int) -> None:
    from tqdm import tqdm  # noqa: PLC0415 (only on terminals)

    self._out = sys.stderr
    # With the loop's events known, the ETA is ours (in the postfix): tqdm's counts steps only.
    bar_format = None
    if self._remaining_events is not None:
      bar_format = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]"
    self._bar = tqdm(
      total=self.total_steps,
      initial=step,
      unit="step",
      dynamic_ncols=True,
      smoothing=0.1,
      desc="train",
      file=self._out,
      bar_format=bar_format,
    )
    self._redirect()

  def _redirect(self) -> None:
    """Sends stdout, stderr and the logging handlers that write to them through the bar."""
    streams = {
      id(sys.stdout): _BarStream(self, sys.stdout),
      id(sys.stderr): _BarStream(self, sys.stderr),
    }
    handlers = list(py_logging.getLogger().handlers)
    absl_handler = logging.get_absl_handler()
    handlers.append(absl_handler.python_handler)
    for handler in handlers:
      stream = getattr(handler, "stream", None)
      if isinstance(handler, py_logging.StreamHandler) and id(stream) in streams:
        self._redirected.append((handler, "stream", stream))
        handler.stream = streams[id(stream)]
    for name in ("stdout", "stderr"):
      original = getattr(sys, name)
      self._redirected.append((sys, name, original))
      setattr(sys, name, streams[id(original)])

  def _restore(self) -> None:
    for owner, attribute, original in reversed(self._redirected):
      current = getattr(owner, attribute)
      setattr(owner, attribute, original)
      if isinstance(current, _BarStream):
        current.flush_partial()
    self._redirected.clear()

  def _print_above(self, text: str) -> None:
    """Writes whole lines above the bar: clear it, write, redraw it (unless it is done)."""
    bar = self._bar
    if bar is None:
      self._out.write(text)
      self._out.flush()
      return
    with bar.get_lock():
      bar.clear(nolock=True)
      self._out.write(text)
      self._out.flush()
      if bar.n < self.total_steps:  # the finished bar is drawn once, by close()
        bar.refresh(nolock=True)

  # -- per step and per event -----------------------------------------------------

  def _eta(self, step: int) -> float:
    """Seconds left: the training steps at their measured rate, plus the evaluations,
    checkpoints and summaries still due at their measured mean durations."""
    done = step - self._start_step
    elapsed = time.perf_counter() - self._start_time - self._paused_seconds
    if done <= 0:
      return float("nan")
    return elapsed / done * (self.total_steps - step) + self._pauses_left(step)

  def _pauses_left(self, step: int) -> float:
    if self._remaining_events is None:
      return 0.0
    left = self._remaining_events(step)
    return sum(
      count * sum(self._event_seconds[kind]) / len(self._event_seconds[kind])
      for kind, count in left.items()
      if self._event_seconds.get(kind)
    )

  def step(self, step: int) -> None:
    """Advances the bar to ``step`` (cheap; call every step)."""
    bar = self._bar
    if bar is None:
      return
    if step < self.total_steps:
      bar.update(step - bar.n)
    else:
      bar.n = step  # drawn by close(), once, with the final postfix

  @contextlib.contextmanager
  def paused(self, kind: str = ""):
    """Takes the time spent inside the block (evaluation, saving) out of the training rate;
    a ``kind`` (e.g. ``'eval'``) also records it for the ETA of the ones still to come."""
    start = time.perf_counter()
    try:
      yield
    finally:
      seconds = time.perf_counter() - start
      self._paused_seconds += seconds
      if kind:
        self._event_seconds.setdefault(kind, []).append(seconds)
      if self._bar is not None:
        # Shift the bar's clock by exactly the pause (tqdm's unpause() would
        # also drop the training time since its last redraw).
        self._bar.start_t += seconds
        self._bar.last_print_t += seconds

  def _show_postfix(self) -> None:
    if self._bar is not None:
      shown = {k: v if isinstance(v, str) else f"{v:.4g}" for k, v in self._postfix.items()}
      self._bar.set_postfix(shown, refresh=False)

  def log(self, step: int, scalars: Mapping[str, float]) -> None:
    """One event's scalars: the bar's postfix, or a line in the log (without a bar)."""
    if not self.enabled:
      return
    self._postfix.update(scalars)
    if self._use_bar:
      self.step(step)
      if self._remaining_events is not None:  # tqdm's own ETA knows only the steps
        eta = self._eta(step)
        self._postfix["eta"] = _format_eta(eta) if eta == eta else "?"
      self._show_postfix()
      return
    eta = self._eta(step)
    eta_text = _format_eta(eta) if eta == eta else "?"
    logging.info(
      "step %d/%d (%.0f%%) %s eta %s",
      step,
      self.total_steps,
      100.0 * step / self.total_steps,
      _format_scalars(self._postfix),
      eta_text,
    )

  def evaluated(self, step: int, eval_metrics: Mapping[str, float]) -> None:
    """An evaluation's line, and its accuracy into the postfix of later bars and lines."""
    if not self.enabled:
      return
    for key, short in (("val/accuracy", "val_acc"), ("eval/accuracy", "eval_acc")):
      if key in eval_metrics:
        self._postfix[short] = float(eval_metrics[key])
        self._show_postfix()
    # ``eval/*`` (the test split) by its bare name, as always; ``val/*`` as ``val_*``.
    names = {
      k: k.split("/")[-1] if k.startswith("eval/") else k.replace("/", "_") for k in eval_metrics
    }
    self.message(
      f"eval step {step}: " + ", ".join(f"{names[k]} {v:.4f}" for k, v in eval_metrics.items())
    )

  def message(self, text: str) -> None:
    """A line that does not break the bar (evaluation results, checkpoints)."""
    if not self.enabled:
      return
    if self._bar is not None:
      self._print_above(text + "\n")
    else:
      logging.info("%s", text)

  def close(self) -> None:
    """Draws the final bar once (rate of the training steps alone) and restores the streams."""
    bar, self._bar = self._bar, None
    if bar is not None:
      self._restore()
      with bar.get_lock():
        # tqdm's close draws the bar with its average rate: elapsed time since
        # the bar opened (after compilation) less the paused time (paused()).
        bar.close()
      self._out.flush()


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
