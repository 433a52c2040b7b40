"""A process that trains a study's points one after another, started once per runner slot.

Why: a point started as a process of its own imported JAX, Flax, Optax and
orbax again (about 2.3 s on a 2-core machine, half of a cached point's
start-up); a worker imports them once. Each point still gets what a fresh
``python -m hybridconv.main`` gives it -- its config (the runner's resolved
one, locked), the same exit statuses and messages
(:func:`hybridconv.training.command.run_training`), its own workdir lock, signal handlers
and loggers -- and the runner records its wall time as before.

Protocol: the runner writes one JSON request per line on the worker's stdin:
``{"config": "{...}", "workdir": DIR}`` to train a point, where ``config`` is the
point's complete config as a Python literal (:func:`hybridconv.configlib.to_literal`:
the runner executed the config file once, for the whole study), or
``{"config", "evaluate": [arguments of hybridconv evaluate]}`` for a finished
point's robustness evaluation. The worker answers each on the pipe whose file
descriptor is its one argument, one JSON line: ``{"exit": status}``, or
``{"restart": true}`` without running anything when the point needs other
process-wide settings (host heap set-up, CPU device count) than the worker
started with. The worker exits after a request whose status is not 0 (what
failed may have left state behind), after a restart answer and at the end of
its input; a point that kills the worker (out of memory, SIGKILL) is seen by
the runner as the worker's exit.

    python -m hybridconv.studies.worker ANSWER_FD
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from absl import app

from hybridconv import configlib
from hybridconv.training import command


def process_settings(config) -> tuple[bool, int | None]:
  """What a point needs of the whole process: host heap set-up, CPU device count (None: JAX's)."""
  from hybridconv import sharding  # noqa: PLC0415  (imports JAX: after the host heap set-up)

  if sharding.cluster_requested(config.distributed):
    return bool(config.keep_host_buffers), None
  count = sharding.cpu_device_count(
    config.cpu_devices, (config.batch_size, config.eval_batch_size), len(os.sched_getaffinity(0))
  )
  return bool(config.keep_host_buffers), count


def serve(requests, answer) -> int:
  """Runs ``requests`` (lines of JSON) until one fails or asks for a restart; the exit status."""
  started_with = None
  for line in requests:
    if not line.strip():
      continue
    request = json.loads(line)
    config = configlib.from_literal(request["config"])
    try:
      if started_with is None:  # the first request sets the process up, before JAX starts
        command.prepare_process(config)
        command.quiet_library_logs()
      needs = process_settings(config)
      started_with = started_with or needs
    except ValueError as error:  # a bad cpu_devices: as the command line, exit 2
      print(f"error: {error}", file=sys.stderr)
      answer({"exit": 2})
      return 2
    if needs != started_with:
      answer({"restart": True})
      return 0
    if "evaluate" in request:  # a finished point's robustness, as `hybridconv evaluate`
      from hybridconv.robustness import main as robustness_main  # noqa: PLC0415

      code = robustness_main.main(request["evaluate"])
    else:
      code = command.run_training(config, request["workdir"])
    answer({"exit": code})
    if code:
      return code
  return 0


class Client:
  """The runner's end of one worker: send a point, poll for its exit status, close."""

  def __init__(self, env: dict[str, str]):
    read_fd, write_fd = os.pipe()
    self.process = subprocess.Popen(
      [sys.executable, "-m", "hybridconv.studies.worker", str(write_fd)],
      stdin=subprocess.PIPE,
      pass_fds=(write_fd,),
      env=env,
      text=True,
      # A session of its own: signals reach it from the runner only (runner.StopSignals).
      start_new_session=True,
    )
    os.close(write_fd)
    self._answers = os.fdopen(read_fd, "r", encoding="utf-8")

  def send(self, workdir: str, config: str) -> None:
    """Asks for a point to be trained in ``workdir`` with ``config``, its resolved config as
    :func:`hybridconv.configlib.to_literal` text."""
    self._request(config, workdir=workdir)

  def evaluate(self, config: str, arguments: list[str]) -> None:
    """Asks for ``hybridconv evaluate <arguments>`` of the finished point whose resolved
    config is ``config`` (it says what the process needs); answered like a point."""
    self._request(config, evaluate=list(arguments))

  def _request(self, config: str, **fields: Any) -> None:
    # The config travels as a Python literal's text (tuples stay tuples; JSON would turn
    # them into lists), inside one JSON line.
    request = {"config": config, **fields}
    self.process.stdin.write(json.dumps(request) + "\n")
    self.process.stdin.flush()

  def poll(self) -> dict[str, Any] | None:
    """The answer to the point sent, None while it runs; a worker that died answers with its
    own exit status (negative: the signal that ended it)."""
    if select.select([self._answers], [], [], 0)[0]:
      line = self._answers.readline()
      if line:
        return json.loads(line)
      return {"exit": self.process.wait()}  # the pipe closed without an answer: it died
    if self.process.poll() is not None and not select.select([self._answers], [], [], 0)[0]:
      return {"exit": self.process.returncode}
    return None

  def stop(self) -> None:
    """Asks the running point to stop: one SIGTERM (it saves a checkpoint, then answers)."""
    if self.process.poll() is None:
      self.process.send_signal(signal.SIGTERM)

  def close(self) -> None:
    """Ends the worker (end of input) and waits for it."""
    if self.process.stdin and not self.process.stdin.closed:
      try:
        self.process.stdin.close()
      except BrokenPipeError:
        pass
    self.process.wait()
    self._answers.close()


def watch_parent(interval: float = 0.5) -> threading.Thread:
  """Stops this worker like a SIGTERM when the runner that started it is gone.

  A runner killed outright (SIGKILL, a crash) cannot forward a stop; without this the
  worker would go on training as an orphan, holding its point's workdir lock. The
  point saves a checkpoint and stops, as on a SIGTERM from the runner.
  """
  parent = os.getppid()

  def watch() -> None:
    while os.getppid() == parent:
      time.sleep(interval)
    os.kill(os.getpid(), signal.SIGTERM)

  thread = threading.Thread(target=watch, name="watch-parent", daemon=True)
  thread.start()
  return thread


def main(argv: list[str]) -> None:
  if len(argv) != 2 or not argv[1].isdigit():
    raise app.UsageError("usage: python -m hybridconv.studies.worker ANSWER_FD")
  watch_parent()
  with os.fdopen(int(argv[1]), "w", encoding="utf-8") as pipe:

    def answer(message: dict[str, Any]) -> None:
      sys.stdout.flush()
      sys.stderr.flush()
      try:
        pipe.write(json.dumps(message) + "\n")
        pipe.flush()
      except BrokenPipeError:  # the runner is gone: nobody to answer
        os._exit(1)

    sys.exit(serve(sys.stdin, answer))


if __name__ == "__main__":
  app.run(main)
