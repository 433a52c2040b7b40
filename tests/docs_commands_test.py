"""Every shell command in the README and the guides runs as written from a fresh clone.

Commands are taken from the ```bash blocks of README.md, docs/*.md and
experiments/*/README.md (continuation lines joined, comments dropped) and each
is dry-run the cheapest way that still exercises it: ``train`` and ``study``
with ``--dry_run`` (config file, variant, every override and every point
checked as a real run checks them), other ``hybridconv`` commands and Python
modules by their flag parser (``--help`` lists every flag the command uses),
``make`` targets with ``make -n``, scripts with ``bash -n``. A command of a
kind this test does not know fails it, so a new kind of command gets a check.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCUMENTS = ["README.md", *sorted(glob.glob("docs/*.md", root_dir=REPO))]
DOCUMENTS += sorted(glob.glob("experiments/*/README.md", root_dir=REPO))
_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
_DRY_RUN = {"train", "study"}  # the `hybridconv` commands with a --dry_run flag


def shell_commands(text: str) -> list[str]:
  """The commands of a Markdown text's bash blocks, continuation lines joined."""
  commands = []
  for block in _BLOCK.findall(text):
    joined = re.sub(r"\\\n\s*", " ", block)
    for line in joined.splitlines():
      line = line.split(" #", 1)[0].strip()
      if line and not line.startswith("#"):
        commands.append(line)
  return commands


def _all_commands() -> list[tuple[str, str]]:
  found = []
  for document in DOCUMENTS:
    with open(os.path.join(REPO, document), encoding="utf-8") as f:
      found += [(document, command) for command in shell_commands(f.read())]
  return found


def _hybridconv(args: list[str]) -> list[str]:
  return [sys.executable, "-m", "hybridconv.cli", *args]


def check_command(tokens: list[str]) -> tuple[list[str], list[str]]:
  """``(command to run, words its output must contain)`` that dry-runs ``tokens``."""
  program, args = tokens[0], tokens[1:]
  if program == "make":
    return ["make", "-n", *args], []
  if program == "bash":
    return ["bash", "-n", *args], []
  if program in ("hybridconv", ".venv/bin/hybridconv"):
    command, rest = args[0], args[1:]
    if command in _DRY_RUN:
      return _hybridconv([command, *rest, "--dry_run"]), []
    return _hybridconv([command, "--help"]), _flag_names(rest)
  if program == ".venv/bin/python" and args[:1] == ["-m"]:
    module, rest = args[1], args[2:]
    if module == "hybridconv.main":
      return [sys.executable, "-m", module, *rest, "--dry_run"], []
    return [sys.executable, "-m", module, "--help"], _flag_names(rest)
  if program == ".venv/bin/python" and args[:1] and args[0].endswith(".py"):
    return [sys.executable, args[0], "--help"], _flag_names(args[1:])
  raise AssertionError(f"no dry run known for {shlex.join(tokens)!r}: add one to this test")


def _flag_names(args: list[str]) -> list[str]:
  return [arg.split("=", 1)[0] for arg in args if arg.startswith("--")]


def test_the_documents_have_commands_of_every_kind():
  programs = {shlex.split(command)[0] for _, command in _all_commands()}
  assert {"make", "hybridconv", ".venv/bin/hybridconv", ".venv/bin/python"} <= programs


@pytest.mark.slow
@pytest.mark.parametrize(
  "document, command", _all_commands(), ids=[f"{d}:{c[:40]}" for d, c in _all_commands()]
)
def test_each_command_runs_as_written(document, command, tmp_path):
  run, words = check_command(shlex.split(command))
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  done = subprocess.run(run, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
  assert done.returncode == 0, f"{document}: {command}\n{done.stderr[-2000:]}"
  for word in words:
    assert word in done.stdout + done.stderr, f"{document}: {command}: {word} is not a flag"
