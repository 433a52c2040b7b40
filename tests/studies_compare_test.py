"""A tiny end-to-end study run in-process, then `hybridconv compare` checked against its records."""

from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from configs import tiny
from hybridconv import configlib, run_layout
from hybridconv.reports import compare_report, findings
from hybridconv.studies import records, stats
from hybridconv.training import train

ARMS = ("free", "gabor")
SIZES = (64, 128)
SEEDS = (0, 1)


def _config(first_layer, size, seed, **extra):
  config = tiny.get_config()
  settings = {
    "model.first_layer": first_layer,
    "data.train_size": size,
    "seed": seed,
    "train_for": "6 steps",
    "tracking.filters_every": "6 steps",
    "tracking.gabor_fit": False,
    "eval_every": "1.0 epochs",
    **extra,
  }
  configlib.apply_overrides(config, settings)
  config.lock()
  return config


@pytest.fixture(scope="module")
def study_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("study")
  for arm in ARMS:
    for size in SIZES:
      for seed in SEEDS:
        train.train_and_evaluate(
          _config(arm, size, seed), str(root / f"first_layer={arm},train_size={size},seed={seed}")
        )
  return str(root)


def _read_csv(path):
  with open(path, encoding="utf-8") as f:
    return list(csv.DictReader(f))


@pytest.mark.slow
def test_compare_tables_agree_with_the_runs_own_metrics(study_root):
  assert (
    compare_report.main(
      ["--workdir", study_root, "--reference", "model.first_layer=free", "--no-likeness"]
    )
    == 0
  )
  results = _read_csv(os.path.join(study_root, "results.csv"))
  assert len(results) == len(ARMS) * len(SIZES) * len(SEEDS)
  finals = {}
  for row in results:
    with open(os.path.join(study_root, row["run"], "metrics.jsonl"), encoding="utf-8") as f:
      evals = [e for e in map(json.loads, f) if "eval/accuracy" in e]
    assert float(row["final_eval_accuracy"]) == pytest.approx(evals[-1]["eval/accuracy"], abs=1e-6)
    assert float(row["best_eval_accuracy"]) == pytest.approx(
      max(e["eval/accuracy"] for e in evals), abs=1e-6
    )
    assert row["finished"] == "True"
    finals[(row["model.first_layer"], int(row["data.train_size"]), int(row["seed"]))] = evals[-1][
      "eval/accuracy"
    ]
  summary = _read_csv(os.path.join(study_root, "summary.csv"))
  assert len(summary) == len(ARMS) * len(SIZES)
  for row in summary:
    arm, size = row["model.first_layer"], int(row["data.train_size"])
    values = [finals[(arm, size, s)] for s in SEEDS]
    expected = stats.t_interval(values)
    assert int(row["n"]) == 2
    assert float(row["mean"]) == pytest.approx(np.mean(values), abs=1e-5)
    assert float(row["ci_low"]) == pytest.approx(expected.ci_low, abs=1e-5)
    if arm == "gabor":
      diffs = [finals[("gabor", size, s)] - finals[("free", size, s)] for s in SEEDS]
      assert float(row["diff_mean"]) == pytest.approx(np.mean(diffs), abs=1e-5)
      assert row["wins"] == f"{sum(d > 0 for d in diffs)}/2"
    else:
      assert row["is_reference"] == "True"
  stale = os.path.join(study_root, "figures", "retired_figure.png")
  with open(stale, "wb") as f:
    f.write(b"an earlier report's figure")
  assert (
    compare_report.main(
      ["--workdir", study_root, "--reference", "model.first_layer=free", "--no-likeness"]
    )
    == 0
  )
  assert not os.path.exists(stale)  # a figure this report does not draw is not left behind
  study = open(os.path.join(study_root, "STUDY.md"), encoding="utf-8").read()
  assert "| train_size | first_layer | n |" in study
  start = records.load_run(os.path.join(study_root, results[0]["run"])).starts[0]
  host = f"{start['host']} ({start['cpu']['model']}, {start['cpu']['cores']} core(s) per run)"
  assert f"- hosts: {host} ({len(results)} runs)" in study
  gabor_64 = np.mean([finals[("gabor", 64, s)] for s in SEEDS])
  assert f"{100 * gabor_64:.2f}" in study
  for figure in ("accuracy_vs_size.png", "eval_curves.png", "first_layer_filters.png"):
    assert os.path.getsize(os.path.join(study_root, "figures", figure)) > 1000
    assert f"figures/{figure}" in study


@pytest.mark.slow
def test_runs_record_subset_provenance_and_first_layer_snapshots(study_root):
  run = records.load_run(os.path.join(study_root, "first_layer=gabor,train_size=64,seed=1"))
  assert run.finished and run.summary["step"] == 6
  subset = json.load(open(os.path.join(run.path, "train_subset.json"), encoding="utf-8"))
  assert subset["num_examples"] == 64 and subset["class_counts"] == [16, 16, 16, 16]
  assert subset["subset_seed"] == 1
  start = run.starts[0]
  assert start["versions"]["jax"] and start["devices"]["count"] >= 1
  assert set(start["git"]) == {"commit", "dirty"}
  snapshot = np.load(os.path.join(run.path, "filters", "first_layer.npz"))
  assert snapshot["initial/kernel"].shape == snapshot["final/kernel"].shape
  assert int(snapshot["initial/step"]) == 0 and int(snapshot["final/step"]) == 6
  assert any(k.startswith("final/gabor/") for k in snapshot.files)


@pytest.mark.slow
def test_same_seed_same_subset_across_arms(study_root):
  hashes = {
    arm: json.load(
      open(os.path.join(study_root, f"first_layer={arm},train_size=64,seed=0", "train_subset.json"))
    )["indices_sha256"]
    for arm in ARMS
  }
  assert hashes["free"] == hashes["gabor"]


@pytest.mark.slow
def test_gabor_likeness_against_the_null_is_computed_and_cached(study_root, tmp_path):
  out = str(tmp_path / "report")
  assert compare_report.main(["--workdir", study_root, "--out", out]) == 0
  study = open(os.path.join(out, "STUDY.md"), encoding="utf-8").read()
  assert "figures/gabor_likeness.png" in study and "Positive control" in study
  cached = json.load(
    open(
      os.path.join(study_root, "first_layer=free,train_size=64,seed=0", "gabor_likeness.json"),
      encoding="utf-8",
    )
  )
  assert 0 <= cached["final"]["frac_above_null_p95"] <= 1
  assert len(cached["final"]["null_r2"]) == 4 * len(cached["final"]["r2"])


@pytest.mark.slow
def test_bad_inputs_are_refused_with_one_line(study_root, tmp_path, capsys):
  assert compare_report.main(["--workdir", str(tmp_path)]) == 2
  assert "no runs found" in capsys.readouterr().err
  assert compare_report.main(["--workdir", study_root, "--by", "model.bogus"]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "--by 'model.bogus' is not a config key" in err
  assert compare_report.main(["--workdir", study_root, "--reference", "seed=0"]) == 2
  assert "--reference 'seed=0'" in capsys.readouterr().err
  # A run that differs in a key that is neither a factor nor the seed.
  stray = tmp_path / "stray"
  train.train_and_evaluate(
    _config("free", 64, 0, **{"optim.learning_rate": 0.01}), str(stray / "odd")
  )
  os.symlink(os.path.join(study_root, "first_layer=free,train_size=64,seed=1"), stray / "normal")
  assert compare_report.main(["--workdir", str(stray), "--no-figures"]) == 0  # lr becomes a factor
  assert (
    compare_report.main(["--workdir", str(stray), "--by", "model.first_layer", "--no-figures"]) == 2
  )
  err = capsys.readouterr().err
  assert "differ in config.optim.learning_rate" in err and "neither a factor nor the seed" in err


@pytest.mark.slow
def test_the_console_command_refuses_an_empty_folder_with_one_line(tmp_path):
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415

  done = subprocess.run(
    [sys.executable, "-m", "hybridconv.cli", "compare", "--workdir", str(tmp_path)],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  )
  assert done.returncode == 2
  assert done.stderr.strip().splitlines() == [
    f"error: --workdir {tmp_path}: no runs found (no config.json at or below)"
  ]


@pytest.mark.slow
def test_robustness_is_compared_against_the_reference_paired_by_seed(study_root, tmp_path):
  """Known robustness summaries in, their paired differences (and Holm p) out."""
  root = tmp_path / "copy"
  shutil.copytree(study_root, root, ignore=shutil.ignore_patterns("checkpoints", "figures"))
  noise = {}
  for arm in ARMS:
    for size in SIZES:
      for seed in SEEDS:
        noise[(arm, size, seed)] = 0.5 + 0.1 * seed + (0.05 + 0.01 * seed if arm == "gabor" else 0)
        summary = {"clean": 0.9, "gaussian_noise": noise[(arm, size, seed)]}
        with open(
          root / f"first_layer={arm},train_size={size},seed={seed}" / run_layout.ROBUSTNESS_FILE,
          "w",
          encoding="utf-8",
        ) as f:
          json.dump({"summary": summary}, f)
  assert (
    compare_report.main(
      ["--workdir", str(root), "--reference", "model.first_layer=free"]
      + ["--no-likeness", "--no-figures"]
    )
    == 0
  )
  summary = _read_csv(os.path.join(root, "summary.csv"))
  for row in summary:
    if row["model.first_layer"] != "gabor":
      assert not row.get("diff_robustness_gaussian_noise_mean")
      continue
    size = int(row["data.train_size"])
    diffs = [noise[("gabor", size, s)] - noise[("free", size, s)] for s in SEEDS]
    expected = stats.paired_difference(dict(enumerate(diffs)), dict.fromkeys(range(2), 0.0))
    assert float(row["diff_robustness_gaussian_noise_mean"]) == pytest.approx(np.mean(diffs))
    assert float(row["diff_robustness_gaussian_noise_ci_low"]) == pytest.approx(expected.ci_low)
    assert row["diff_robustness_gaussian_noise_wins"] == "2/2"
    assert float(row["diff_robustness_clean_mean"]) == 0.0
    assert 0 < float(row["diff_robustness_gaussian_noise_p_holm"]) <= 1
  study = open(os.path.join(root, "STUDY.md"), encoding="utf-8").read()
  assert "| train_size | first_layer | clean diff | gaussian_noise diff |" in study
  assert "5.50 (" in study  # +5.5 points, the mean of +5 and +6, with its interval


@pytest.mark.slow
def test_gabor_parameters_are_set_beside_the_images_orientation_and_frequency_energy(
  study_root, tmp_path
):
  root = tmp_path / "copy"
  shutil.copytree(study_root, root, ignore=shutil.ignore_patterns("checkpoints", "figures"))
  assert compare_report.main(["--workdir", str(root), "--no-likeness"]) == 0
  two_panels = Image.open(root / "figures" / "gabor_parameters.png").size
  statistics = {
    "orientation_energy": [1 / 8] * 8,
    "frequency_edges": [0.0, 0.0625, 0.125, 0.25, 0.5, 0.75],
    "frequency_energy": [0.05, 0.2, 0.3, 0.4, 0.05],
  }
  with open(root / "image_statistics.json", "w", encoding="utf-8") as f:
    json.dump(statistics, f)
  assert compare_report.main(["--workdir", str(root), "--no-likeness"]) == 0
  three_panels = Image.open(root / "figures" / "gabor_parameters.png").size
  assert three_panels[0] > 1.3 * two_panels[0] and three_panels[1] == two_panels[1]


@pytest.mark.slow
def test_a_run_from_before_a_config_key_existed_is_grouped_with_newer_ones(study_root, tmp_path):
  """A key absent from an older run's config.json counts as its default, not as a difference."""
  root = tmp_path / "copy"
  shutil.copytree(study_root, root, ignore=shutil.ignore_patterns("checkpoints", "figures"))
  path = root / "first_layer=free,train_size=64,seed=0" / "config.json"
  config = json.loads(path.read_text(encoding="utf-8"))
  del config["data"]["decode"], config["model"]["first_kernel_size"]
  path.write_text(json.dumps(config), encoding="utf-8")
  by = ["--by", "model.first_layer", "--by", "data.train_size", "--no-likeness", "--no-figures"]
  assert compare_report.main(["--workdir", str(root), *by]) == 0
  changed = root / "first_layer=free,train_size=128,seed=0" / "config.json"
  config = json.loads(changed.read_text(encoding="utf-8"))
  config["data"]["decode"]["crop_scale"] = [0.5, 1.0]  # a real difference is still one
  changed.write_text(json.dumps(config), encoding="utf-8")
  assert compare_report.main(["--workdir", str(root), *by]) == 2


@pytest.mark.slow
def test_first_layer_movement_table_matches_the_snapshots(study_root, tmp_path):
  root = tmp_path / "copy"
  shutil.copytree(study_root, root, ignore=shutil.ignore_patterns("checkpoints", "figures"))
  assert compare_report.main(["--workdir", str(root), "--no-likeness"]) == 0
  changes = []
  for seed in SEEDS:
    with np.load(
      root / f"first_layer=free,train_size=64,seed={seed}" / "filters" / "first_layer.npz"
    ) as z:
      start, end = (
        z[f"{w}/kernel"].reshape(-1, z[f"{w}/kernel"].shape[-1]) for w in ("initial", "final")
      )
    changes.append(np.linalg.norm(end - start, axis=0) / np.linalg.norm(start, axis=0))
  expected = 100 * np.median(np.concatenate(changes))
  assert expected > 0
  study = (root / "STUDY.md").read_text(encoding="utf-8")
  assert "### How far the first-layer filters moved" in study
  row = next(line for line in study.splitlines() if line.startswith("| free | 64 |"))
  assert row.split("|")[4].strip() == f"{expected:.1f}"


@pytest.mark.slow
def test_parameter_counts_per_arm_say_what_each_first_layer_learns(study_root, tmp_path):
  root = tmp_path / "copy"
  shutil.copytree(study_root, root, ignore=shutil.ignore_patterns("checkpoints", "figures"))
  assert compare_report.main(["--workdir", str(root), "--no-likeness", "--no-figures"]) == 0
  with np.load(root / "first_layer=free,train_size=64,seed=0" / "filters" / "first_layer.npz") as z:
    height, width, channels, filters = z["initial/kernel"].shape
  study = (root / "STUDY.md").read_text(encoding="utf-8")
  rows = {
    line.split("|")[1].strip(): [int(c.strip().replace(",", "")) for c in line.split("|")[2:5]]
    for line in study.split("## Parameters per arm")[1].splitlines()
    if line.startswith("| ") and line.split("|")[2].strip().replace(",", "").isdigit()
  }
  free, gabor = rows["free"], rows["gabor"]
  assert free[1] == height * width * channels * filters + filters and free[2] == 0
  assert gabor[1] == 3 * filters  # orientation, frequency and bias learned
  assert gabor[2] == 3 * filters  # width, aspect ratio and phase fixed
  assert free[0] - gabor[0] == free[1] - gabor[1]  # the rest of the model is the same


@pytest.mark.slow
def test_findings_are_written_and_copied_into_a_readme_block(study_root, tmp_path, capsys):
  readme = tmp_path / "README.md"
  readme.write_text(f"# Project\n\n{findings.BEGIN}\nstale\n{findings.END}\n\nmore prose\n")
  args = ["--workdir", study_root, "--reference", "model.first_layer=free", "--no-figures"]
  assert compare_report.main([*args, "--out", str(tmp_path / "out"), "--readme", str(readme)]) == 0
  generated = (tmp_path / "out" / "FINDINGS.md").read_text()
  assert findings.extract(readme.read_text()) == findings.extract(generated)
  assert readme.read_text().endswith("\n\nmore prose\n") and "stale" not in readme.read_text()
  paired = _read_csv(tmp_path / "out" / "paired.csv")
  end = [row for row in paired if row["reading"] == "test, end of training"]
  assert len(end) == len(SIZES) * (len(ARMS) - 1)
  for row in end:  # every end-of-training comparison has its sentence
    assert f"at {int(row['data.train_size']):,} training images" in generated
  # Bad --readme values: one line, exit 2, and the readme untouched.
  before = readme.read_text()
  assert (
    compare_report.main([*args, "--out", str(tmp_path / "o2"), "--readme", str(tmp_path / "x")])
    == 2
  )
  assert "--readme=" in capsys.readouterr().err
  (tmp_path / "plain.md").write_text("no block\n")
  assert compare_report.main([*args, "--readme", str(tmp_path / "plain.md")]) == 2
  assert "has no findings block" in capsys.readouterr().err
  assert compare_report.main(["--workdir", study_root, "--readme", str(readme)]) == 2
  assert "needs --reference" in capsys.readouterr().err
  assert readme.read_text() == before


@pytest.mark.slow
def test_a_changed_cadence_neither_splits_nor_blocks_the_groups(study_root, tmp_path):
  root = tmp_path / "copy"
  shutil.copytree(study_root, root, ignore=shutil.ignore_patterns("checkpoints", "figures"))
  for arm in ARMS:  # a third seed whose evaluations and checkpoints come at another cadence
    config = _config(arm, 64, 2, **{"eval_every": "0.5 epochs", "checkpoint.every": "0.25 epochs"})
    train.train_and_evaluate(config, str(root / f"first_layer={arm},train_size=64,seed=2"))
  args = ["--workdir", str(root), "--reference", "model.first_layer=free", "--no-figures"]
  assert compare_report.main(args) == 0
  summary = {
    (row["model.first_layer"], row["data.train_size"]): row
    for row in _read_csv(root / "summary.csv")
  }
  assert summary[("gabor", "64")]["n"] == "3" and summary[("gabor", "128")]["n"] == "2"
  study = (root / "STUDY.md").read_text()
  assert "cannot change what a run learns" in study
  assert "`checkpoint.every`" in study and "`eval_every`" in study


@pytest.mark.slow
def test_the_report_shows_arms_budgets_and_per_seed_values(study_root, tmp_path):
  out = tmp_path / "out"
  args = ["--workdir", study_root, "--out", str(out), "--no-figures", "--no-likeness"]
  assert compare_report.main([*args, "--reference", "model.first_layer=free"]) == 0
  study = (out / "STUDY.md").read_text()
  per_seed = study.split("## Per-seed final test accuracy")[1].split("##")[0]
  for row in _read_csv(out / "results.csv"):
    line = next(
      line
      for line in per_seed.splitlines()
      if line.startswith(f"| {row['data.train_size']} | {row['model.first_layer']} |")
    )
    assert f"{row['seed']}: {100 * float(row['final_eval_accuracy']):.2f}" in line
  arms = study.split("## Arms")[1].split("##")[0]
  assert "fixed gabor(" not in arms and "`gabor`" in arms and "Gabor(learn=" in arms
  budget = study.split("## Training budget per size")[1].split("##")[0]
  assert "| 64 |" in budget and "| 128 |" in budget and "adamw" in budget.lower()


def test_a_fixed_bank_is_shown_with_every_option():
  from hybridconv.reports import review_tables  # noqa: PLC0415

  text = review_tables.resolved_source("fixed:gabor")
  assert text.startswith("fixed gabor(num_orientations=8, num_scales=2, highest_frequency=0.25")
  assert "bankmix[bank: fixed master_key(sigma=1.0" in review_tables.resolved_source(
    {"source": "bankmix", "bank": {"source": "fixed", "bank": "master_key"}}
  )
