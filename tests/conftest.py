"""Shared test helpers: the tiny config with dotted-key overrides."""

from __future__ import annotations

import pytest

from configs import tiny
from hybridconv import configlib


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
