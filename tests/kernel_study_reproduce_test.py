"""experiments/kernel_study/reproduce.py: choosing committed points and comparing reruns with them.

The reruns themselves train (about 30 s a point at 100 images), so they run from the command
the study README documents, not here; these tests check what decides "bit for bit".
"""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest

from experiments.kernel_study import reproduce

KEYS = ["arm", "data.train_size", "model.first_layer", "seed"]
FREE = "train_size=100,seed=0,arm=free"


def test_a_point_name_becomes_the_study_commands_selectors():
  assert reproduce.selectors("train_size=1000,seed=3,arm=fixed_gabor", KEYS) == [
    "data.train_size=1000",
    "seed=3",
    "arm=fixed_gabor",
  ]
  with pytest.raises(ValueError, match="'width' of .* names no single key"):
    reproduce.selectors("width=3,seed=0", KEYS)
  with pytest.raises(ValueError, match="is not a point name"):
    reproduce.selectors("free", KEYS)


def test_a_committed_point_agrees_with_itself_and_not_with_a_changed_copy(tmp_path):
  recorded = reproduce.readings(os.path.join(reproduce.DEFAULT_STUDY, FREE))
  assert len(recorded["validation"]) == 8 and not math.isnan(recorded["test"])
  assert reproduce.identical(reproduce.compare(recorded, recorded))

  copy = str(tmp_path / FREE)
  shutil.copytree(os.path.join(reproduce.DEFAULT_STUDY, FREE), copy)
  path = os.path.join(copy, "metrics.jsonl")
  with open(path, encoding="utf-8") as f:
    events = [json.loads(line) for line in f]
  final = next(e for e in events if "eval/accuracy" in e)
  final["eval/accuracy"] += 1e-4  # one test image in ten thousand
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(e) + "\n" for e in events)
  result = reproduce.compare(recorded, reproduce.readings(copy))
  assert result["test"] == pytest.approx(1e-4) and result["validation"] == 0
  assert not reproduce.identical(result)


def test_other_initial_values_or_a_missing_reading_count_as_a_difference():
  recorded = reproduce.readings(os.path.join(reproduce.DEFAULT_STUDY, FREE))
  other = dict(recorded, **{"initial values": {**recorded["initial values"], "fc2": "0" * 64}})
  assert not reproduce.compare(recorded, other)["same initial values"]
  fewer = dict(recorded, validation=dict(list(recorded["validation"].items())[:-1]))
  assert reproduce.compare(recorded, fewer)["validation"] == math.inf


def test_per_commit_picks_the_first_point_of_every_code_state():
  chosen = reproduce.one_per_code_state(reproduce.DEFAULT_STUDY, 1000)
  states = [reproduce.code_state(os.path.join(reproduce.DEFAULT_STUDY, n)) for n in chosen]
  assert len(set(states)) == len(states) >= 2
  every = {
    reproduce.code_state(os.path.join(reproduce.DEFAULT_STUDY, n))
    for n in reproduce.finished_points(reproduce.DEFAULT_STUDY)
    if int(reproduce.point_values(n)["train_size"]) <= 1000
  }
  assert set(states) == every
  for name, state in zip(chosen, states, strict=True):
    earlier = [
      n
      for n in reproduce.finished_points(reproduce.DEFAULT_STUDY)
      if n < name and int(reproduce.point_values(n)["train_size"]) <= 1000
    ]
    assert all(
      reproduce.code_state(os.path.join(reproduce.DEFAULT_STUDY, n)) != state for n in earlier
    )


def test_a_point_that_is_not_finished_is_one_error_line(capsys):
  with pytest.raises(SystemExit) as stop:
    reproduce.main(["--points", "train_size=100,seed=99,arm=free"])
  assert stop.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[0].startswith("usage:") and err[-1].split(": ", 1)[1] == (
    f"error: --points: 'train_size=100,seed=99,arm=free' is not a finished "
    f"point of {reproduce.DEFAULT_STUDY}"
  )
