"""The compilation cache is per user, outside any clone, and the environment's choice wins."""

from __future__ import annotations

import os

from hybridconv import compilation_cache
from hybridconv.studies import runner


def test_defaults_to_the_users_cache_and_keeps_what_the_environment_says(monkeypatch):
  monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
  env = {}
  folder = compilation_cache.enable(env)
  assert folder == os.path.join(os.path.expanduser("~"), ".cache", "hybridconv", "jax")
  assert env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
  monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
  assert compilation_cache.enable({}) == "/xdg/hybridconv/jax"
  mine = {"JAX_COMPILATION_CACHE_DIR": "/mine", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "1"}
  assert compilation_cache.enable(mine) == "/mine"
  assert mine["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "1"


def test_every_point_of_a_study_shares_the_users_cache(monkeypatch, tmp_path):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  env = runner.child_environment(str(tmp_path / "root"), 0, "")
  assert env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "hybridconv" / "jax")
