"""`hybridconv evaluate` on a tiny trained run: exactness, monotonicity, outputs, errors."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from configs import tiny
from hybridconv import run_layout
from hybridconv.reports import robustness as robustness_report
from hybridconv.reports import run_report
from hybridconv.robustness import evaluate, outputs, suites
from hybridconv.robustness import main as cli
from hybridconv.tracking import wandb_logger, writers
from hybridconv.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)
# Level 0 of every family must reproduce the clean evaluation exactly.
CHECK_SUITE = suites.Suite(
  "check",
  {
    suites.CLEAN: (0.0,),
    suites.NOISE: (0.0, 0.1),
    suites.BLUR: (0.0, 1.0),
    suites.CONTRAST: (0.5,),
    suites.FGSM: EPS,
    suites.PGD: EPS,
  },
  pgd_steps=5,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A tiny trained run (8 steps, checkpoints at 4 and 8) and its final metrics."""
  workdir = str(tmp_path_factory.mktemp("robust_run"))
  config = tiny.get_config("hybrid")
  config.lock()
  final = train.train_and_evaluate(config, workdir)
  return workdir, final


@pytest.fixture(scope="module")
def results(run):
  workdir, _ = run
  return evaluate.evaluate_workdir(workdir, suite=CHECK_SUITE, pgd_images=0)


def _by_family(results):
  return {f: [e["correct"] for e in entries] for f, entries in outputs.by_family(results).items()}


@pytest.mark.slow
def test_clean_accuracy_equals_the_runs_final_evaluation(run, results):
  _, final = run
  assert results["step"] == final["step"] == 8
  assert results["clean_accuracy"] == final["eval/accuracy"]
  assert results["num_test_images"] == 100


@pytest.mark.slow
def test_level_zero_reproduces_clean_exactly(results):
  counts = _by_family(results)
  clean = counts[suites.CLEAN][0]
  for family in (suites.NOISE, suites.BLUR, suites.FGSM, suites.PGD):
    assert counts[family][0] == clean, family
  assert results["num_attack_images"] == 100  # pgd_images=0: the same images as clean


@pytest.mark.slow
def test_pgd_accuracy_does_not_rise_with_eps_nor_beat_fgsm(results):
  counts = _by_family(results)
  tolerance = math.ceil(results["num_attack_images"] / 1000)  # one image per 1,000
  pgd, fgsm = counts[suites.PGD], counts[suites.FGSM]
  assert all(b <= a + tolerance for a, b in zip(pgd, pgd[1:], strict=False)), pgd
  assert all(p <= f + tolerance for p, f in zip(pgd, fgsm, strict=True)), (pgd, fgsm)
  assert pgd[-1] < pgd[0]  # the attack does something on this model


@pytest.mark.slow
def test_results_file_schema_and_summary(run, results):
  workdir, _ = run
  with open(os.path.join(workdir, run_layout.ROBUSTNESS_FILE), encoding="utf-8") as f:
    saved = json.load(f)
  assert saved == json.loads(json.dumps(results))
  assert [e["family"] for e in saved["entries"]].count(suites.PGD) == len(EPS)
  for entry in saved["entries"]:
    assert set(entry) == {"family", "level", "accuracy", "correct", "num_images"}
    assert entry["accuracy"] == entry["correct"] / entry["num_images"]
  for family, value in saved["summary"].items():
    levels = [e["accuracy"] for e in saved["entries"] if e["family"] == family]
    assert value == pytest.approx(sum(levels) / len(levels))
  assert list(saved["summary"]) == list(suites.FAMILIES)


@pytest.mark.slow
def test_report_gets_a_robustness_table_and_curves(run, results):
  workdir, _ = run
  path = run_report.write_report(workdir)
  with open(path, encoding="utf-8") as f:
    text = f.read()
  assert "## Robustness" in text
  assert "| pgd_linf | 16/255 |" in text
  assert os.path.isfile(
    os.path.join(workdir, run_layout.REPORT_FIGURES_DIR, robustness_report.FIGURE_NAME)
  )


@pytest.mark.slow
def test_wandb_gets_a_table_and_one_line_plot_per_family(results, monkeypatch):
  logged = []

  class FakeRun:
    def log(self, data, step=None):
      logged.append((step, data))

    def finish(self):
      pass

  monkeypatch.setattr(wandb_logger.WandbLogger, "_init_run", lambda self, wandb, mode: FakeRun())
  logger = writers.BackgroundWriter(wandb_logger.WandbLogger(project="p", mode="offline"))
  outputs.log_to_wandb(logger, results)  # as hybridconv.robustness.main._publish does
  logger.close()
  keys = {key for _, data in logged for key in data}
  curves = {f"robustness/{f}_curve" for f in suites.FAMILIES if f != suites.CLEAN}
  assert curves <= keys
  assert {"robustness/results", "robustness/pgd_linf"} <= keys
  table = next(data["robustness/results"] for _, data in logged if "robustness/results" in data)
  assert len(table.data) == len(results["entries"])
  assert all(step is None for step, _ in logged)


@pytest.mark.slow
def test_checkpoint_choices(run):
  workdir, _ = run
  small = suites.Suite("small", {suites.CLEAN: (0.0,)})
  assert evaluate.evaluate_workdir(workdir, checkpoint="best", suite=small)["step"] == 8
  assert evaluate.evaluate_workdir(workdir, checkpoint=4, suite=small)["step"] == 4


@pytest.mark.slow
def test_test_subset_holds_the_attack_subset_and_sets_the_corruption_counts(run):
  workdir, _ = run
  small = suites.Suite(
    "small", {suites.CLEAN: (0.0,), suites.NOISE: (0.0, 0.2), suites.FGSM: (0.0,)}
  )
  results = evaluate.evaluate_workdir(workdir, suite=small, test_images=60, pgd_images=25)
  assert results["num_test_images"] == 60 and results["num_attack_images"] == 25
  for entry in results["entries"]:
    expected = 25 if entry["family"] == suites.FGSM else 60
    assert entry["num_images"] == expected, entry
  tested = set(evaluate.seeded_subset(100, 60, 0))
  assert set(evaluate.seeded_subset(100, 25, 0)) <= tested
  assert set(evaluate.seeded_subset(100, 60, 1)) != tested  # the seed picks the images
  counts = _by_family(results)
  assert counts[suites.NOISE][0] == counts[suites.CLEAN][0]  # sigma 0 on the same 60 images


@pytest.mark.slow
def test_a_subset_smaller_than_a_batch_is_not_padded_to_a_whole_batch(run, monkeypatch):
  workdir, _ = run
  built = []
  real = evaluate.shard_batches

  def recording(images, labels, batch_size, mesh):
    batches = real(images, labels, batch_size, mesh)
    built.append((len(labels), batches[0]["label"].shape[0]))
    return batches

  monkeypatch.setattr(evaluate, "shard_batches", recording)
  small = suites.Suite("small", {suites.CLEAN: (0.0,), suites.PGD: (2 / 255,)}, pgd_steps=3)
  fitted = evaluate.evaluate_workdir(workdir, suite=small, test_images=60, pgd_images=25)
  assert built == [(60, 60), (25, 25)]  # tiny's eval batch is 64
  # The same counts as with both sets padded to whole batches of 64 (the random
  # start of PGD does not depend on the batch length).
  monkeypatch.setattr(evaluate, "fitted_batch_size", lambda count, batch_size, mesh: batch_size)
  built.clear()
  padded = evaluate.evaluate_workdir(workdir, suite=small, test_images=60, pgd_images=25)
  assert built == [(60, 64), (25, 64)]
  assert [e["correct"] for e in fitted["entries"]] == [e["correct"] for e in padded["entries"]]


class _FakeMesh:
  def __init__(self, devices):
    self.devices = np.empty((devices,), object)


@pytest.mark.parametrize(
  "count, batch, devices, expected",
  [
    (500, 1000, 1, 500),
    (500, 1000, 4, 500),
    (501, 1000, 4, 504),
    (3, 1000, 4, 4),
    (2000, 1000, 2, 1000),
    (1000, 1000, 8, 1000),
  ],
)
def test_fitted_batch_size(count, batch, devices, expected):
  assert evaluate.fitted_batch_size(count, batch, _FakeMesh(devices)) == expected


def _listing(workdir):
  return sorted(
    (os.path.relpath(os.path.join(d, n), workdir), os.path.getmtime(os.path.join(d, n)))
    for d, _, names in os.walk(workdir)
    for n in names
  )


@pytest.mark.parametrize(
  "argv, message",
  [
    (["--suite=big"], "unknown suite 'big'; suites: default"),
    (["--corruptions=gaussian_noise,fog"], "unknown corruption 'fog'"),
    (["--eps=0,1.5"], "eps=1.5 is outside [0, 1]"),
    (["--checkpoint=5"], "no checkpoint of step 5"),
    (["--checkpoint=first"], "--checkpoint='first' is not 'latest', 'best' or a saved step"),
    (["--pgd-images=-3"], "--pgd-images=-3 must be an int >= 0"),
    (["--test-images=-1"], "--test-images=-1 must be an int >= 0"),
  ],
)
@pytest.mark.slow
def test_bad_input_is_one_error_line_and_exit_2_changing_nothing(run, capsys, argv, message):
  workdir, _ = run
  before = _listing(workdir)
  assert cli.main([f"--workdir={workdir}", *argv]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
  assert _listing(workdir) == before


@pytest.mark.slow
def test_a_workdir_without_checkpoints_is_refused(run, tmp_path, capsys):
  workdir, _ = run
  shutil.copy(os.path.join(workdir, "config.json"), tmp_path / "config.json")
  assert cli.main([f"--workdir={tmp_path}"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "has no checkpoint" in err[0]
  assert os.listdir(tmp_path) == ["config.json"]


@pytest.mark.slow
def test_cli_on_four_devices_matches_the_one_device_evaluation(run, tmp_path):
  workdir, _ = run
  copy = tmp_path / "run"
  shutil.copytree(workdir, copy)
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="4")
  args = [
    "--corruptions=gaussian_noise,pgd_linf",
    "--eps=0,4/255",
    "--pgd-images=40",
    "--pgd-steps=3",
  ]
  result = subprocess.run(
    [sys.executable, "-m", "hybridconv.cli", "evaluate", f"--workdir={copy}", *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert "results in" in result.stdout and (copy / "REPORT.md").exists()
  with open(copy / run_layout.ROBUSTNESS_FILE, encoding="utf-8") as f:
    sharded = json.load(f)
  import jax  # noqa: PLC0415

  assert jax.device_count() != 4
  local = evaluate.evaluate_workdir(
    str(copy),
    corruptions=["gaussian_noise", "pgd_linf"],
    eps=[0.0, 4 / 255],
    pgd_images=40,
    pgd_steps=3,
  )
  assert sharded["num_attack_images"] == local["num_attack_images"] == 40
  for a, b in zip(sharded["entries"], local["entries"], strict=True):
    assert (a["family"], a["level"]) == (b["family"], b["level"])
    assert abs(a["correct"] - b["correct"]) <= 1, (a, b)  # float reduction order only


@pytest.mark.slow
def test_a_run_trained_before_newer_config_keys_still_evaluates(run, tmp_path):
  """Keys added after a run was trained are missing from its config.json: defaults fill them."""
  workdir, _ = run
  copy = tmp_path / "old_run"
  shutil.copytree(workdir, copy)
  with open(copy / "config.json", encoding="utf-8") as f:
    config = json.load(f)
  del config["model"]["first_kernel_size"], config["data"]["train_size"], config["robustness"]
  with open(copy / "config.json", "w", encoding="utf-8") as f:
    json.dump(config, f)
  small = suites.Suite("small", {suites.CLEAN: (0.0,)})
  results = evaluate.evaluate_workdir(str(copy), suite=small)
  assert (
    results["clean_accuracy"] == evaluate.evaluate_workdir(workdir, suite=small)["clean_accuracy"]
  )
