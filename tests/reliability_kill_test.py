"""SIGKILL at chosen points of a real run, then a resume in the same workdir: nothing differs.

Each killed run is a ``python -m hybridconv.main`` subprocess that a test hook
(``HYBRIDCONV_FAULT``, see ``hybridconv/training/faults.py``) kills with SIGKILL exactly
where asked; the resume runs in this process and must end with the train state
and eval metrics of an uninterrupted run, bit for bit.
"""

from __future__ import annotations

import signal

import pytest

from hybridconv import tracking
from hybridconv.training import checkpointing, train
from tests import reliability_support as rs

# Each test kills a real training subprocess and resumes it: left out of `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  return rs.reference(tmp_path_factory)


SYNC = ("--config.checkpoint.async_save=False",)


@pytest.mark.parametrize(
  ("fault", "args", "committed"),
  [
    # Inside the second half-epoch, after checkpoint 4 was started: an
    # asynchronous write may not be committed yet when the process dies ...
    ("kill@step:6", (), ([], [4])),
    # ... a synchronous one is, so the resume starts from step 4.
    ("kill@step:6", SYNC, ([4],)),
    # During the evaluation at step 4, before checkpoint 4 is saved.
    ("kill@eval:4", (), ([],)),
    # During the final evaluation.
    ("kill@eval:8", SYNC, ([4],)),
  ],
  ids=["step6", "step6-sync", "eval4", "eval8-sync"],
)
def test_sigkill_then_resume_is_bitwise_identical(fault, args, committed, reference, tmp_path):
  killed = rs.run_cli(tmp_path, *args, fault=fault)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  checkpoints = checkpointing.existing_steps(str(tmp_path / "checkpoints"))
  assert checkpoints in committed
  final = train.train_and_evaluate(rs.config(), str(tmp_path))
  rs.assert_same_run(tmp_path, final, reference)
  # The history is complete: every log and eval step of the reference appears.
  want = {(e["step"], tuple(sorted(e))) for e in tracking.read_events(reference[0])}
  got = {(e["step"], tuple(sorted(e))) for e in tracking.read_events(str(tmp_path))}
  assert want <= got


def test_sigkill_during_a_save_keeps_the_previous_checkpoint(reference, tmp_path):
  killed = rs.run_cli(tmp_path, fault="kill@save:8")
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  names = rs.checkpoint_dirs(tmp_path)
  # Checkpoint 8 was written but never committed: only a temporary directory.
  assert "4" in names and "8" not in names, names
  assert any(name.startswith("8.orbax-checkpoint-tmp") for name in names), names
  final = train.train_and_evaluate(rs.config(), str(tmp_path))
  rs.assert_same_run(tmp_path, final, reference)
  # The half-written checkpoint was removed when the resumed run opened the directory.
  assert rs.checkpoint_dirs(tmp_path) == ["4", "8"]
