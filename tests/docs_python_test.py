"""Every Python example of the README and the guides runs as written.

The ```python blocks of README.md and docs/*.md run in order, one namespace
per document (a guide's later example may use an earlier one's names, as a
reader running them in turn would), from the repository root. Where an example
prints what the text around it promises, the output is checked too.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCUMENTS = ["README.md", *sorted(glob.glob("docs/*.md", root_dir=REPO))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
# (a line of the example, what its output must contain)
PROMISED_OUTPUT = {
  "print(r.path, r.kernel_shape, r.summary())": [
    "conv1 (7, 7, 1, 16) {'r2_mean'",
    "conv2 (3, 3, 16, 32) {}",
  ],
  "print(list(variables))": ["['params', 'FrozenKernel']"],
}


def python_blocks(document: str) -> list[str]:
  with open(os.path.join(REPO, document), encoding="utf-8") as f:
    return _BLOCK.findall(f.read())


def test_the_guides_have_python_examples():
  assert sum(len(python_blocks(d)) for d in DOCUMENTS) >= 8


@pytest.mark.slow
@pytest.mark.parametrize("document", [d for d in DOCUMENTS if python_blocks(d)])
def test_each_example_runs_as_written(document, monkeypatch):
  monkeypatch.chdir(REPO)
  namespace = {"__name__": "docs_example"}
  for index, block in enumerate(python_blocks(document)):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      # dont_inherit: the example runs without this file's `from __future__ import annotations`
      exec(compile(block, f"{document} example {index}", "exec", dont_inherit=True), namespace)
    for line, promised in PROMISED_OUTPUT.items():
      if line in block:
        for text in promised:
          assert text in out.getvalue(), (document, index, out.getvalue())
