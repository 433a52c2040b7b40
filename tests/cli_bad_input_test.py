"""Every entry point answers bad input with exit 2 and exactly one ``error:`` line, and changes
nothing in an existing run.

Each command runs as a user would type it (``python -m hybridconv.cli <command> ...``), against
one finished tiny run whose files are fingerprinted before and after.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = "{run}"  # replaced by the existing run's directory
EMPTY = "{empty}"  # replaced by an empty directory


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("existing") / "run")
  done = _command("train", "--config=configs/tiny.py", f"--workdir={workdir}")
  assert done.returncode == 0, done.stderr[-2000:]
  return workdir


def _command(name: str, *args: str, module: str | None = None) -> subprocess.CompletedProcess:
  head = ["-m", module] if module else ["-m", "hybridconv.cli", name]
  return subprocess.run(
    [sys.executable, *head, *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
    env={**os.environ, "WANDB_MODE": "disabled"},
  )


def _fingerprint(directory: str) -> dict[str, str]:
  prints = {}
  for folder, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        prints[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return prints


CASES = [
  (
    "train",
    ["--config=configs/missing.py", f"--workdir={EMPTY}/r"],
    "--config='configs/missing.py'",
  ),
  (
    "train",
    ["--config=configs/missing.py", "--config.seed=1", f"--workdir={EMPTY}/r"],
    "--config='configs/missing.py'",
  ),
  (
    "train",
    ["--config=configs/tiny.py", "--config.nosuch=1", f"--workdir={RUN}"],
    "--config.nosuch",
  ),
  (
    "train",
    ["--config=configs/tiny.py", "--config.batch_size=abc", f"--workdir={RUN}"],
    "batch_size",
  ),
  (
    "train",
    ["--config=configs/tiny.py", "--config.data.validation_size=-1", f"--workdir={RUN}"],
    "data.validation_size=-1",
  ),
  (
    "train",
    ["--config=configs/tiny.py:free", f"--workdir={RUN}"],
    "",  # the existing run is hybrid: resuming it with another model is refused
  ),
  (
    "study",
    ["--config=configs/tiny.py", f"--workdir={EMPTY}/s", "--grid", "data.train_size=200,abc"],
    "override data.train_size='abc'",
  ),
  ("study", ["--config=configs/tiny.py", f"--workdir={EMPTY}/s", "--grid", "nosuch=1,2"], ""),
  ("study", ["--config=configs/tiny.py", f"--workdir={EMPTY}/s", "--jobs=0"], "--jobs=0"),
  ("study", ["--config=configs/tiny.py", f"--workdir={EMPTY}/s", "seed=99"], "selector seed="),
  ("compare", [f"--workdir={EMPTY}"], f"--workdir {EMPTY}: no runs found"),
  ("compare", [f"--workdir={RUN}", "--by", "model.nosuch"], "--by 'model.nosuch'"),
  ("compare", [f"--workdir={RUN}", "--reference", "seed=0"], "--reference 'seed=0'"),
  (
    "compare",
    [
      f"--workdir={RUN}",
      "--by",
      "model.first_layer",
      "--reference",
      "model.first_layer=hybrid",
      f"--readme={EMPTY}/missing.md",
    ],
    "--readme=",
  ),
  ("evaluate", [f"--workdir={EMPTY}"], ""),
  ("evaluate", [f"--workdir={RUN}", "--suite=nosuch"], ""),
  ("evaluate", [f"--workdir={RUN}", "--step=12345"], ""),
  ("analyze", [f"--workdir={EMPTY}"], ""),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "args", "says"), CASES, ids=lambda v: str(v)[:40])
def test_bad_input_is_one_error_line_and_leaves_the_run_alone(
  existing_run, tmp_path, name, args, says
):
  empty = str(tmp_path / "empty")
  os.makedirs(empty)
  args = [a.replace(RUN, existing_run).replace(EMPTY, empty) for a in args]
  before = _fingerprint(existing_run)
  done = _command(name, *args)
  lines = done.stderr.strip().splitlines()
  assert done.returncode == 2, done.stderr[-3000:]
  assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-3000:]
  assert says.replace(EMPTY, empty) in lines[0]
  assert _fingerprint(existing_run) == before


@pytest.mark.slow
def test_the_wandb_report_refuses_bad_arguments_in_one_line():
  done = _command("", "--entity", "", "--project", "p", module="hybridconv.reports.wandb_report")
  lines = done.stderr.strip().splitlines()
  assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")
