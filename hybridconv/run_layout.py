"""The layout of a run directory and of a study root: every file and folder name, once.

Writers (the trainer, the tracker, the robustness evaluator, the study runner, the reports)
and readers (resumption, ``hybridconv compare``, the study records) import these names
instead of spelling them, so renaming a file is one change and a reader cannot look for a
file under a name no writer uses. Imports nothing from the package (every layer may use it).
"""

from __future__ import annotations

import os

# -- a run directory (``--workdir``) ----------------------------------------------------------
CONFIG_FILE = "config.json"  # the run's config as JSON (written at start; checked on resume)
METRICS_FILE = "metrics.jsonl"  # one JSON object per log event: scalars by step
HISTOGRAMS_FILE = "histograms.jsonl"  # parameter and filter histograms by step
TABLES_FILE = "tables.jsonl"  # tables logged by the tracker
SUMMARY_FILE = "summary.json"  # written when a run reaches its last step: final metrics
SUBSET_FILE = "train_subset.json"  # which training images the run uses (and its hold-out)
RUN_INFO_FILE = "run_info.json"  # one record per start: commit, versions, devices
INITIAL_VALUES_FILE = "initial_values.json"  # per-layer fingerprints of a new run's init
CLASSES_FILE = "classes.json"  # index -> class folder name (image-folder data)
ROBUSTNESS_FILE = "robustness.json"  # `hybridconv evaluate`'s results
LIKENESS_FILE = "gabor_likeness.json"  # `hybridconv compare`'s Gabor-likeness cache
ARTIFACTS_FILE = "artifacts.jsonl"  # artifacts the tracker logged (name, type, path)
TIMES_FILE = "point_times.json"  # the study runner's wall time of each process of a point
CHECKPOINT_DIR = "checkpoints"  # orbax step folders
FILTERS_DIR = "filters"  # filter grids per layer, GIFs and the snapshots below
SNAPSHOT_FILE = os.path.join(FILTERS_DIR, "first_layer.npz")  # first layer, start and end
GABOR_STATE_FILE = os.path.join(FILTERS_DIR, "initial_gabor_parameters.npz")
INITIAL_KERNELS_FILE = "initial_kernels.npz"  # beside the filter state: kernels at step 0
REPORT_FILE = "REPORT.md"  # `hybridconv analyze`
REPORT_FIGURES_DIR = "report"  # REPORT.md's figures
# What a study commits of each run and reads back (about a hundred KB a run).
LIGHT_FILES = (
  CONFIG_FILE,
  METRICS_FILE,
  SUMMARY_FILE,
  RUN_INFO_FILE,
  INITIAL_VALUES_FILE,
  SUBSET_FILE,
  ROBUSTNESS_FILE,
  TIMES_FILE,
  SNAPSHOT_FILE,
  LIKENESS_FILE,
)

# -- a study root (``hybridconv study --workdir``; ``hybridconv compare``'s output) ----------
PLAN_FILE = "study.json"  # the study's spec, factors, overrides and points
RESULTS_FILE = "points.csv"  # one row per point (status, accuracy, wall time), rewritten after each
COMPILATION_CACHE_DIR = ".jax_cache"  # older roots' own cache (now per user: compilation_cache)
SLURM_DIR = "slurm"  # `--executor=slurm`: submitit's job files and the array tasks' logs
SUBMISSIONS_FILE = os.path.join(SLURM_DIR, "submissions.jsonl")  # one line per job array
STUDY_FILE = "STUDY.md"
FINDINGS_FILE = "FINDINGS.md"
PAIRED_FILE = "paired.csv"
RUNS_TABLE_FILE = "results.csv"  # one row per run: factors, seed, metrics
GROUPS_TABLE_FILE = "summary.csv"  # one row per group: n, mean, CI, paired difference
IMAGE_STATISTICS_FILE = "image_statistics.json"  # the data's orientation and frequency content
FIGURES_DIR = "figures"
LIKENESS_CONTROL_FILE = "gabor_likeness_control.json"  # the positive control's cached score
