#!/usr/bin/env bash
# Runs the kernel study: the budget pilot, then the main study size by size (cheapest first),
# then the random-features study. Resumable: run it again (on this or another machine with the
# committed records) and finished points are skipped; Ctrl-C or SIGTERM stops it cleanly.
#   bash experiments/kernel_study/run.sh            # results under experiments/kernel_study/results
#   OUT=/somewhere bash experiments/kernel_study/run.sh
set -u
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-experiments/kernel_study/results}
# Two points at a time, one CPU device each: both cores stay busy through each point's
# compilation and evaluations (the main study's points all use these settings).
PARALLEL=(--jobs=2 --config.cpu_devices=1)
$PY -m hybridconv.studies.sweep --config=experiments/kernel_study/pilot.py --workdir="$OUT/pilot"
$PY -m experiments.kernel_study.budgets --pilot="$OUT/pilot"
MAIN=("$PY" -m hybridconv.studies.sweep --config=experiments/kernel_study/study.py
      --workdir="$OUT/fashion_mnist" "${PARALLEL[@]}")
for size in 100 1000 10000 55000; do
  "${MAIN[@]}" data.train_size=$size
done
$PY -m hybridconv.studies.sweep --config=experiments/kernel_study/random_features.py \
    --workdir="$OUT/random_features"
