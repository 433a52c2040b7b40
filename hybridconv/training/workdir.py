"""The run directory: its ``config.json``, whether a config may resume it, and its lock.

Running the same command again resumes from the workdir's checkpoints. If the
config changed in between, the restored state would belong to a different
experiment: a changed model or optimiser no longer fits the saved arrays, a
changed dataset or seed silently mixes two runs. So a change to a key in
:data:`MODEL_KEYS` is refused, naming the key and both values, unless
``config.allow_config_change`` is True. Other changes (cadences, run length,
learning rate, paths) are allowed and logged, because extending or re-pacing a
run is routine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import jax
from absl import logging

from hybridconv.run_layout import CONFIG_FILE, SUBSET_FILE, SUMMARY_FILE

# Dotted prefixes of keys whose change makes a resumed run a different experiment.
MODEL_KEYS = (
  "seed",
  "compute_dtype",
  "model",
  "data.source",
  "data.name",
  "data.gratings",
  "data.train_size",
  "data.subset_seed",
  "data.validation_size",
  "data.validation_seed",
  "optim.name",
)
OVERRIDE_KEY = "allow_config_change"
_ABSENT = "<absent>"
# Keys that cannot change what a run learns (paths, cadences of logging, evaluation and
# checkpoints, devices, tracking, robustness evaluation after training): they never split
# or block a study's groups; where they differ between runs, reports say so in a note.
NEUTRAL_KEYS = (
  "tracking",
  "checkpoint",
  "log_every",
  "eval_every",
  "eval_batch_size",
  "distributed",
  "robustness",
  "cpu_devices",
  "keep_host_buffers",
  OVERRIDE_KEY,
  "data.data_dir",
  "data.prepare",
)


def is_neutral(key: str) -> bool:
  """Whether the dotted config ``key`` is (or lies below) one of :data:`NEUTRAL_KEYS`."""
  return any(key == prefix or key.startswith(prefix + ".") for prefix in NEUTRAL_KEYS)


def config_json(config) -> dict[str, Any]:
  """The config as plain JSON data (what ``config.json`` holds)."""
  return json.loads(config.to_json_best_effort())


def write_json(path: str, data: Any, **dump_options: Any) -> None:
  """Writes ``data`` as JSON to ``path`` atomically (a reader never sees half a file)."""
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(data, f, **dump_options)
  os.replace(path + ".tmp", path)


def read_json(path: str) -> Any:
  """The JSON in ``path``, or None when it is missing or unreadable."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def write_config(workdir: str, config_data: dict[str, Any]) -> None:
  """Writes ``config.json`` (process 0), replacing it atomically."""
  if jax.process_index() != 0:
    return
  write_json(os.path.join(workdir, CONFIG_FILE), config_data, indent=2, sort_keys=True)


def flatten_config(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """A nested config -> ``{'a.b': value}`` with values that compare by content.

  Lists become tuples; ``model.kernels`` (per-layer specs) and other mappings
  left as values become sorted JSON, so a per-layer spec is one value.
  """
  flat = {}
  for key, value in data.items():
    dotted = f"{prefix}{key}"
    if isinstance(value, Mapping) and value and dotted != "model.kernels":
      flat.update(flatten_config(value, dotted + "."))
    else:
      flat[dotted] = _frozen(value)
  return flat


def _frozen(value: Any) -> Any:
  if isinstance(value, list | tuple):
    return tuple(_frozen(v) for v in value)
  if isinstance(value, Mapping):
    return json.dumps(value, sort_keys=True)
  return value


def config_changes(saved: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
  """``(dotted key, saved value, new value)`` for every key that differs, sorted by key."""
  old_flat, new_flat = flatten_config(saved), flatten_config(new)
  keys = sorted((set(old_flat) | set(new_flat)) - {OVERRIDE_KEY})
  return [
    (key, old_flat.get(key, _ABSENT), new_flat.get(key, _ABSENT))
    for key in keys
    if old_flat.get(key, _ABSENT) != new_flat.get(key, _ABSENT)
  ]


def changes_model(key: str) -> bool:
  return any(key == prefix or key.startswith(prefix + ".") for prefix in MODEL_KEYS)


def check_resume(workdir: str, new: Mapping[str, Any], *, allow_change: bool) -> None:
  """Refuses to resume ``workdir``'s checkpoints with a config that changes the model.

  Call only when the workdir holds checkpoints. Keys missing from one side
  (configs written by another version of the code) count as allowed changes.

  Raises:
    ValueError: a key of :data:`MODEL_KEYS` differs and ``allow_change`` is False.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    logging.warning("%s has checkpoints but no %s; cannot check the config", workdir, CONFIG_FILE)
    return
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  changes = config_changes(saved, new)
  refused = [
    (k, old, value) for k, old, value in changes if changes_model(k) and _ABSENT not in (old, value)
  ]
  if refused and not allow_change:
    key, old, value = refused[0]
    others = ", ".join(k for k, _, _ in refused[1:])
    raise ValueError(
      f"config.{key}={value!r} differs from {old!r} in {path}, whose checkpoints this run "
      f"would resume{f' (also changed: {others})' if others else ''}; a change of "
      f"{', '.join(MODEL_KEYS)} makes a different experiment. Use a new --workdir, or pass "
      f"--config.{OVERRIDE_KEY}=True to resume anyway"
    )
  for key, old, value in changes:
    logging.warning("resuming %s with config.%s=%r (was %r)", workdir, key, value, old)


def check_workdir(workdir: str, checkpoint_dir: str) -> None:
  """Refuses a workdir (or its checkpoint folder) that is a file, before any work.

  Without this check a workdir that is a file fails with a traceback, and a
  ``checkpoints`` file inside the workdir lets the run train a whole checkpoint
  interval before the first save fails.

  Raises:
    ValueError: naming the path and what is allowed.
  """
  for path, what in ((workdir, "--workdir"), (checkpoint_dir, "the checkpoint folder")):
    if os.path.exists(path) and not os.path.isdir(path):
      raise ValueError(
        f"{what} {path!r} is an existing file; allowed: a directory, or a path "
        "that does not exist yet"
      )


def _lock_holder(path: str) -> str:
  """The pid holding a ``flock`` on ``path``, from Linux's /proc/locks ('' if unknown)."""
  try:
    inode = os.stat(path).st_ino
    with open("/proc/locks", encoding="ascii") as f:
      for line in f:  # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
        fields = line.split()
        if "FLOCK" in fields and len(fields) >= 6 and fields[5].endswith(f":{inode}"):
          return fields[4]
  except OSError:
    pass
  return ""


@contextlib.contextmanager
def exclusive(workdir: str) -> Iterator[None]:
  """Holds an exclusive lock on the workdir for a run's whole life.

  Two runs started into one workdir would interleave their records in
  ``metrics.jsonl`` and save into the same checkpoint folder. The lock is a
  ``flock`` on the directory itself (no lock file to clean up): the kernel
  drops it when the process exits in any way, a SIGKILL included, so a crashed
  run never blocks its own resume. Only process 0 locks: the processes of one
  multi-host run share the workdir.

  Raises:
    ValueError: the workdir is locked by another run, naming it and the
      process that holds it.
  """
  if jax.process_index() != 0:
    yield
    return
  created = not os.path.isdir(workdir)
  os.makedirs(workdir, exist_ok=True)
  fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _lock_holder(workdir)
      raise ValueError(
        f"--workdir={workdir!r} is in use by another run (process "
        f"{holder or 'unknown'}); allowed: a workdir no running run holds -- wait for that "
        "run to finish or stop it, or pass another --workdir"
      ) from None
    yield
  except ValueError:
    # A run refused before writing anything leaves no trace: not even the empty
    # folder it made to hold the lock.
    if created and not os.listdir(workdir):
      os.rmdir(workdir)
    raise
  finally:
    os.close(fd)  # releases the lock


def check_train_subset(workdir: str, record: Mapping[str, Any]) -> None:
  """Refuses to resume a run whose training images differ from those it started with.

  The subset's recipe is in :data:`MODEL_KEYS`; this also catches a changed
  dataset under the same config (other files, another version of the data).
  """
  path = os.path.join(workdir, SUBSET_FILE)
  if not os.path.isfile(path):
    return
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  for key in ("indices_sha256", "num_examples"):
    if key in saved and key in record and saved[key] != record[key]:
      raise ValueError(
        f"the training images differ from those of {path} ({key} {record[key]!r} != "
        f"{saved[key]!r}); resuming would mix two training sets. Use a new --workdir"
      )


def write_train_subset(workdir: str, record: Mapping[str, Any]) -> None:
  """Writes ``train_subset.json`` (process 0)."""
  if jax.process_index() != 0:
    return
  write_json(os.path.join(workdir, SUBSET_FILE), dict(record), indent=2, sort_keys=True)


def write_summary(workdir: str, final: Mapping[str, Any], *, total_steps: int) -> None:
  """Writes ``summary.json``: the final metrics of a run that reached ``total_steps``.

  Its presence marks a finished run (the study runner skips such points);
  values are plain floats so the file reads without the library.
  """
  data = {
    "finished": int(final.get("step", -1)) >= total_steps,
    "total_steps": int(total_steps),
    **{k: (float(v) if isinstance(v, (int, float)) else v) for k, v in final.items()},
  }
  write_json(os.path.join(workdir, SUMMARY_FILE), data, indent=2, sort_keys=True)


def read_summary(workdir: str) -> dict[str, Any] | None:
  """``summary.json`` of ``workdir``, or None when the run has not finished."""
  return read_json(os.path.join(workdir, SUMMARY_FILE))
