"""JAX's persistent compilation cache, kept per user as pip keeps its downloads.

Why: hybridconv's programs are small and many (a train step, an eval step, the
Gabor fit of the filter summaries, the robustness attacks), so on a CPU most of a
short run's start-up, a study's first point and the test suite's time is XLA
compiling them. The cache is keyed by the program, the compile options, the
backend and the JAX version, so an entry is never stale and one folder can serve
every run, study, clone and test session of the user: a fresh clone or a new
study root compiles nothing that an earlier one compiled.

``JAX_COMPILATION_CACHE_DIR`` (and the two thresholds) in the environment win,
so a job can still point at its own folder. Delete ``~/.cache/hybridconv/jax``
to start cold.
"""

from __future__ import annotations

import os

ENV = {
  # Every program, however fast it compiled: JAX's defaults skip those under 1 s, nearly
  # all of hybridconv's on a CPU, where together they are most of a short run's start-up.
  "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
  "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}


def default_directory() -> str:
  """``$XDG_CACHE_HOME/hybridconv/jax``, else ``~/.cache/hybridconv/jax``."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "hybridconv", "jax")


def enable(environ: dict[str, str] | None = None) -> str:
  """Sets the cache's variables in ``environ`` (default: this process's, before JAX reads
  them) where they are unset; returns the cache folder."""
  environ = os.environ if environ is None else environ
  environ.setdefault("JAX_COMPILATION_CACHE_DIR", default_directory())
  for key, value in ENV.items():
    environ.setdefault(key, value)
  return environ["JAX_COMPILATION_CACHE_DIR"]
