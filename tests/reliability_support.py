"""Shared by the reliability tests: the run they break, its reference, and how to compare.

The run is ``configs/tiny.py`` (8 steps of 32 gratings, 8 steps per epoch) with
an evaluation every half epoch, so it evaluates at steps 4 and 8 and saves
checkpoints at steps 4 and 8. The same config runs in-process
(:func:`config`) or from the command line (:data:`CLI_ARGS`), which must give
bit-identical results: that is what a resume after a kill relies on.
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from hybridconv.training import faults, train
from tests.conftest import make_tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL_STEPS = 8
# cpu_devices=1: the in-process reference runs on this test process's single CPU
# device, and a different device count changes float rounding, not the run.
OVERRIDES = {"eval_every": "0.5 epochs", "cpu_devices": 1}
CLI_ARGS = ["--config=configs/tiny.py"] + [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
FINAL_KEYS = ("eval/accuracy", "eval/loss")

_REFERENCE: dict[str, tuple[str, dict]] = {}


def config(**overrides):
  """The tiny reliability config (locked), with dotted-key overrides."""
  return make_tiny_config("hybrid", **{**OVERRIDES, **overrides})


def reference(tmp_path_factory) -> tuple[str, dict]:
  """``(workdir, final metrics)`` of one uninterrupted in-process run, shared per process."""
  if "run" not in _REFERENCE:
    workdir = str(tmp_path_factory.mktemp("reference"))
    final = train.train_and_evaluate(config(), workdir)
    _REFERENCE["run"] = (workdir, final)
  return _REFERENCE["run"]


def run_cli(
  workdir, *extra_args, fault: str = "", timeout: float = 300
) -> subprocess.CompletedProcess:
  """``python -m hybridconv.main`` on the reliability config, with ``HYBRIDCONV_FAULT=fault``."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  env.pop(faults.ENV_VAR, None)
  if fault:
    env[faults.ENV_VAR] = fault
  return subprocess.run(
    [sys.executable, "-m", "hybridconv.main", *CLI_ARGS, f"--workdir={workdir}", *extra_args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def saved_arrays(workdir, step: int = TOTAL_STEPS) -> dict[str, np.ndarray]:
  """Every array of checkpoint ``step``'s train state, by path."""
  path = os.path.join(str(workdir), "checkpoints", str(step), "state")
  restored = ocp.StandardCheckpointer().restore(path)
  return {
    jax.tree_util.keystr(p): np.asarray(v)
    for p, v in jax.tree_util.tree_flatten_with_path(restored)[0]
  }


def assert_same_run(workdir, final: dict, reference_run: tuple[str, dict]) -> None:
  """Bit-identical final train state and identical final eval metrics."""
  ref_dir, ref_final = reference_run
  assert final["step"] == TOTAL_STEPS
  for key in FINAL_KEYS:
    assert final[key] == ref_final[key], key
  got, want = saved_arrays(workdir), saved_arrays(ref_dir)
  assert got.keys() == want.keys()
  for key, value in want.items():
    np.testing.assert_array_equal(got[key], value, err_msg=key)


def checkpoint_dirs(workdir) -> list[str]:
  """Names in ``<workdir>/checkpoints`` (step directories and any temporary ones)."""
  return sorted(os.listdir(os.path.join(str(workdir), "checkpoints")))
