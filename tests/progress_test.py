"""Tests of what a run prints: the bar under a pseudo-terminal, plain lines through a pipe.

The child process drives :class:`hybridconv.training.progress.Progress` as the train
loop does, with a slow first step (compilation), absl log lines and, from
another thread, a W&B-like banner written to stderr in pieces. The parent
reads everything the child printed and replays it as a terminal would.
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL = 40
CHILD = textwrap.dedent(f"""
    import sys, threading, time
    from absl import flags, logging
    from hybridconv.training.progress import Progress

    flags.FLAGS(["child"])  # as absl.app.run does
    logging.set_verbosity(logging.INFO)
    logging.use_absl_handler()
    progress = Progress(total_steps={TOTAL}, initial_step=0)
    progress.compiling()
    time.sleep(1.5)  # compilation
    progress.compiled(1)

    def banner():  # W&B initialises in its own thread and writes in pieces
      sys.stderr.write("wandb: Tracking run ")
      sys.stderr.flush()
      time.sleep(0.05)
      sys.stderr.write("bright-sky-1\\n")

    thread = None
    for step in range(2, {TOTAL} + 1):
      time.sleep(0.02)
      progress.step(step)
      if step == 5:
        thread = threading.Thread(target=banner)
        thread.start()
      if step % 10 == 0:
        progress.log(step, {{"loss": 1.0 / step, "img/s": 1000.0}})
      if step == 20:
        logging.info("a log line from absl")
        print("a line on stdout")
      if step in (20, {TOTAL}):
        with progress.paused():
          time.sleep(0.3)  # evaluating
        progress.evaluated(step, {{"eval/loss": 0.5, "eval/accuracy": 0.8125}})
    thread.join()
    progress.close()
    """)


def _screen(raw: str) -> list[str]:
  """The lines a terminal shows after ``raw``: carriage returns overwrite, ANSI codes dropped."""
  raw = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
  lines, current, col = [], [], 0
  for char in raw:
    if char == "\r":
      col = 0
    elif char == "\n":
      lines.append("".join(current).rstrip())
      current, col = [], 0
    else:
      if col < len(current):
        current[col] = char
      else:
        current.append(char)
      col += 1
  if "".join(current).strip():
    lines.append("".join(current).rstrip())
  return lines


def _run_in_pty() -> str:
  """The child's output with stdin, stdout and stderr on a pseudo-terminal.

  ``os.openpty`` and ``subprocess`` (which forks and execs in C) rather than
  ``pty.fork``: a test process that already runs JAX's threads must not fork
  Python.
  """
  master, slave = os.openpty()
  # A new pseudo-terminal is 0 columns wide: give it a terminal's size.
  fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
  child = subprocess.Popen(
    [sys.executable, "-c", CHILD],
    cwd=REPO,
    stdin=slave,
    stdout=slave,
    stderr=slave,
    close_fds=True,
    start_new_session=True,
  )
  os.close(slave)
  chunks = []
  while True:
    try:
      data = os.read(master, 4096)
    except OSError:  # EIO: the child closed the terminal
      break
    if not data:
      break
    chunks.append(data)
  os.close(master)
  output = b"".join(chunks).decode(errors="replace")
  assert child.wait(timeout=120) == 0, output
  return output


BAR = re.compile(r"^train: +\d+%\|")


@pytest.mark.slow
def test_bar_under_a_terminal_keeps_every_line_whole():
  raw = _run_in_pty()
  screen = [line for line in _screen(raw) if line.strip()]
  others = [line for line in screen if not BAR.match(line)]
  # Every line that is not the bar is one whole message, nothing glued on or cut off.
  assert [re.sub(r"^[IWE]\d{4} [\d:.]+ +\d+ \S+:\d+\] ", "", line) for line in others] == [
    "compiling the train step ...",
    others[1].split("] ")[-1],
    "wandb: Tracking run bright-sky-1",
    "a log line from absl",
    "a line on stdout",
    "eval step 20: loss 0.5000, accuracy 0.8125",
    f"eval step {TOTAL}: loss 0.5000, accuracy 0.8125",
  ], screen
  assert re.search(r"compiled the train step and ran step 1 in 1\.\d s$", others[1])
  assert not any("wandb" in line or "absl" in line for line in screen if BAR.match(line))
  bars = [line for line in screen if BAR.match(line)]
  assert len(bars) == 1 and bars[0] == screen[-1]  # one bar left on screen, the last line
  final = bars[0]
  assert f"{TOTAL}/{TOTAL}" in final and "eval_acc=0.8125" in final and "loss=0.025" in final
  assert raw.count("100%") == 1  # the finished bar is drawn once
  # The rate leaves out compilation (1.5 s) and evaluation: about 50 steps/s, not ~12.
  rate = float(re.search(r"([\d.]+)step/s", final).group(1))
  assert rate > 20, final


@pytest.mark.slow
def test_plain_lines_through_a_pipe_with_an_eta_that_leaves_out_compilation():
  result = subprocess.run(
    [sys.executable, "-c", CHILD], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
  )
  lines = result.stderr.splitlines()
  assert "\r" not in result.stderr and "|" not in result.stderr  # no bar
  assert any(line.endswith("] compiling the train step ...") for line in lines)
  steps = [line for line in lines if re.search(r"\] step \d+/40 ", line)]
  assert len(steps) == 4
  assert "eval_acc=0.8125" in steps[2] and "eval_acc" not in steps[0]
  for line in steps:  # whole lines: the message ends with its ETA
    assert re.search(
      r"\] step \d+/40 \(\d+%\) loss=\S+ img/s=1000( eval_acc=0.8125)? eta "
      r"\d:\d\d:\d\d$",
      line,
    ), line
  # First ETA at step 10: 30 steps at ~0.02 s is about 1 s; counting the 1.5 s of
  # compilation over 10 steps it would say 5 s or more.
  eta = re.search(r"eta (\d):(\d\d):(\d\d)$", steps[0]).groups()
  assert int(eta[0]) * 3600 + int(eta[1]) * 60 + int(eta[2]) <= 3, steps[0]
  assert "wandb: Tracking run bright-sky-1" in lines
  assert "a line on stdout" in result.stdout


@pytest.mark.parametrize("enabled", [False])
def test_a_disabled_progress_prints_nothing(enabled, capsys):
  from hybridconv.training.progress import Progress

  progress = Progress(total_steps=3, initial_step=0, enabled=enabled, use_bar=True)
  progress.compiling()
  progress.compiled(1)
  progress.log(2, {"loss": 1.0})
  progress.evaluated(3, {"eval/accuracy": 0.5})
  progress.close()
  captured = capsys.readouterr()
  assert captured.out == captured.err == ""


def test_the_eta_adds_the_evaluations_still_due_at_their_measured_length(monkeypatch):
  from hybridconv.training import progress as progress_lib  # noqa: PLC0415

  now = [100.0]
  monkeypatch.setattr(progress_lib.time, "perf_counter", lambda: now[0])
  progress = progress_lib.Progress(
    total_steps=100,
    initial_step=0,
    enabled=False,
    remaining_events=lambda step: {"eval": (100 - step) // 10, "checkpoint": 0},
  )
  progress.compiled(0)
  now[0] += 10.0  # 10 steps in 10 s
  with progress.paused("eval"):
    now[0] += 3.0  # an evaluation takes 3 s
  # 90 steps at 1 s each, and 9 evaluations at 3 s each
  assert progress._eta(10) == 90.0 + 27.0
