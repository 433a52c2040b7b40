"""What produced a run: code version, library versions and devices (``run_info.json``).

A study compares runs that may have been trained on different machines, days
or commits. Each start of a run (the first and every resume) appends one
record to ``<workdir>/run_info.json``, so ``hybridconv compare`` can list what
produced the numbers and flag runs whose commits or versions differ.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import socket
import subprocess
from typing import Any

import jax

from hybridconv.training import workdir as workdir_lib

RUN_INFO_FILE = "run_info.json"
# Libraries whose versions change numerics or behaviour.
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def git_state(directory: str | None = None) -> dict[str, Any]:
  """``{'commit', 'dirty'}`` of the git checkout holding ``directory`` (the package by default).

  ``commit`` is None outside a git checkout (an installed wheel); ``dirty``
  says whether tracked files differ from the commit.
  """
  directory = directory or os.path.dirname(os.path.abspath(__file__))

  def git(*args: str) -> str | None:
    try:
      done = subprocess.run(
        ["git", "-C", directory, *args], capture_output=True, text=True, timeout=10, check=False
      )
    except (OSError, subprocess.SubprocessError):
      return None
    return done.stdout.strip() if done.returncode == 0 else None

  commit = git("rev-parse", "HEAD")
  dirty = None if commit is None else bool(git("status", "--porcelain", "--untracked-files=no"))
  return {"commit": commit, "dirty": dirty}


def versions() -> dict[str, str | None]:
  """Python and the :data:`PACKAGES` versions (None where one is not installed)."""
  found: dict[str, str | None] = {"python": platform.python_version()}
  for package in PACKAGES:
    try:
      found[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      found[package] = None
  return found


def run_info() -> dict[str, Any]:
  """One start's record: time, host, git state, versions, devices."""
  devices = jax.devices()
  return {
    "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "host": socket.gethostname(),
    "git": git_state(),
    "versions": versions(),
    "devices": {
      "platform": devices[0].platform,
      "kind": devices[0].device_kind,
      "count": len(devices),
      "processes": jax.process_count(),
    },
  }


def record_start(workdir: str) -> dict[str, Any]:
  """Appends this start's :func:`run_info` to ``run_info.json`` (process 0); returns it."""
  info = run_info()
  if jax.process_index() != 0:
    return info
  starts = read_run_info(workdir)
  workdir_lib.write_json(
    os.path.join(workdir, RUN_INFO_FILE), {"starts": [*starts, info]}, indent=2
  )
  return info


def read_run_info(workdir: str) -> list[dict[str, Any]]:
  """The start records of ``workdir`` ([] when it has none or the file is unreadable)."""
  data = workdir_lib.read_json(os.path.join(workdir, RUN_INFO_FILE))
  starts = data.get("starts") if isinstance(data, dict) else None
  return list(starts) if isinstance(starts, list) else []
