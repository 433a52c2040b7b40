"""The "Bring your own model" examples of docs/layers.md run as written."""

from __future__ import annotations

import pathlib
import re

import pytest

GUIDE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "layers.md"


def _blocks() -> list[str]:
  text = GUIDE.read_text()
  section = text.split("## Bring your own model\n", 1)[1].split("\n## ", 1)[0]
  return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_its_three_examples():
  assert len(_blocks()) == 3


@pytest.mark.parametrize("index", range(3))
@pytest.mark.slow
def test_readme_example_runs(index, capsys):
  exec(
    compile(_blocks()[index], f"docs/layers.md byom block {index}", "exec"), {"__name__": "readme"}
  )
  if index == 0:
    out = capsys.readouterr().out
    assert "conv1 (7, 7, 1, 16) {'r2_mean'" in out and "conv2 (3, 3, 16, 32) {}" in out
  if index == 2:
    assert "['params', 'FrozenKernel']" in capsys.readouterr().out
