"""What produced a run: code version, library versions and devices (``run_info.json``), and
a fingerprint of its initial values per layer (``initial_values.json``).

A study compares runs that may have been trained on different machines, days
or commits. Each start of a run (the first and every resume) appends one
record to ``<workdir>/run_info.json``, so ``hybridconv compare`` can list what
produced the numbers and flag runs whose commits or versions differ.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import os
import platform
import socket
import subprocess
from typing import Any

import jax
import numpy as np

from hybridconv.run_layout import INITIAL_VALUES_FILE, RUN_INFO_FILE
from hybridconv.training import workdir as workdir_lib

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


def cpu() -> dict[str, Any]:
  """The host CPU's model name and the cores this process may use (its affinity: a study
  slot pinned to one core records 1), which a timing or a bitwise comparison depends on."""
  model = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      model = next(
        (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model
      )
  except OSError:  # not Linux
    pass
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return {"model": model, "cores": cores}


def code_state(start: dict[str, Any]) -> str:
  """One start's code as reports name it: the short commit, and ``(dirty)`` when the working
  tree had uncommitted changes."""
  git = start.get("git") or {}
  return f"{str(git.get('commit') or 'unknown')[:10]}{' (dirty)' if git.get('dirty') else ''}"


def run_info() -> dict[str, Any]:
  """One start's record: time, host, CPU, git state, versions, devices."""
  devices = jax.devices()
  return {
    "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "host": socket.gethostname(),
    "cpu": cpu(),
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


def layer_fingerprints(*trees: Any) -> dict[str, str]:
  """SHA-256 of every top-level layer's arrays (parameters, frozen kernels, statistics).

  Arrays are grouped by the first element of their path (``conv1``, ``fc2``,
  ``stage1_block0``), hashed in path order with their shapes and dtypes. Two runs
  whose layer has the same fingerprint started that layer bit-identical, which is
  how a study shows its arms are paired on every layer they do not swap.
  """
  hashes: dict[str, Any] = {}
  for tree in trees:
    for path, value in sorted(
      jax.tree_util.tree_flatten_with_path(tree)[0], key=lambda item: jax.tree_util.keystr(item[0])
    ):
      if jax.dtypes.issubdtype(getattr(value, "dtype", None), jax.dtypes.prng_key):
        value = jax.random.key_data(value)
      array = np.ascontiguousarray(np.asarray(value))
      layer = str(getattr(path[0], "key", getattr(path[0], "name", path[0])))
      digest = hashes.setdefault(layer, hashlib.sha256())
      digest.update(jax.tree_util.keystr(path).encode())
      digest.update(f"{array.dtype}{array.shape}".encode())
      digest.update(array.tobytes())
  return {layer: digest.hexdigest() for layer, digest in sorted(hashes.items())}


def record_initial_values(workdir: str, *trees: Any) -> None:
  """Writes ``initial_values.json`` (process 0): :func:`layer_fingerprints` of a new run."""
  if jax.process_index() != 0:
    return
  workdir_lib.write_json(
    os.path.join(workdir, INITIAL_VALUES_FILE),
    {"layers": layer_fingerprints(*trees)},
    indent=2,
  )


def read_initial_values(workdir: str) -> dict[str, str]:
  """Layer -> fingerprint of a run's initial values ({} for a run that recorded none)."""
  data = workdir_lib.read_json(os.path.join(workdir, INITIAL_VALUES_FILE))
  layers = data.get("layers") if isinstance(data, dict) else None
  return dict(layers) if isinstance(layers, dict) else {}
