"""Shared test helpers: the tiny config with dotted-key overrides."""

from __future__ import annotations

import os

# One persistent compilation cache for the whole suite, set before JAX is imported and
# inherited by every subprocess a test starts: the suite compiles the same small programs
# (tiny configs, the same train and eval steps) in hundreds of tests and processes, and
# without it compiling was most of its time. Every program is cached however fast it
# compiled (JAX's default skips those under 1 s, which is nearly all of them here). The
# cache is keyed by the program, the compile options and the JAX version, so an entry
# is never stale; the Makefile sets the same folder for `make test`;
# `rm -rf .cache/jax` empties it.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_REPO, ".cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402

from configs import tiny  # noqa: E402
from hybridconv import configlib  # noqa: E402


def make_tiny_config(variant: str = "hybrid", **overrides):
  """``configs/tiny.py:<variant>`` with dotted-key overrides, locked like the command line's.

  Overrides go through :func:`configlib.apply_overrides`, so a misspelt key in a
  test fails with the key named instead of silently adding a new one.
  """
  config = tiny.get_config(variant)
  config.lock()
  return configlib.apply_overrides(config, overrides)


@pytest.fixture
def tiny_config():
  """:func:`make_tiny_config`, for tests that take fixtures."""
  return make_tiny_config
