"""Shared test helpers: the tiny config with dotted-key overrides."""

from __future__ import annotations

import os

# The user's persistent compilation cache (hybridconv/compilation_cache.py), set before JAX
# is imported and inherited by every subprocess a test starts: the suite compiles the same
# small programs (tiny configs, the same train and eval steps) in hundreds of tests and
# processes, and without it compiling was most of its time. Kept outside the clone, so a
# fresh clone of an unchanged program compiles nothing.
from hybridconv import compilation_cache  # imports nothing of JAX

compilation_cache.enable()
# The suite's programs are tiny and run for a few steps, so XLA:CPU's optimisation passes cost
# far more than they save: at backend level 0 the compile-heavy tests run 2.4x faster (measured:
# the pairing and train-step tests, 204 s -> 84 s, cold cache) with the same results, golden
# values included. Runs, studies and benchmarks keep XLA's default level; a test that needs it
# can drop XLA_FLAGS from its subprocess's environment, as the multi-process tests do.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
  ).strip()

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
