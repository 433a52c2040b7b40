#!/usr/bin/env bash
# Runs both studies of experiments/kernel_study, cheapest points first. Resumable: run it again
# (on this or another machine with the committed records) and finished points are skipped.
#   bash experiments/kernel_study/run.sh            # results under experiments/kernel_study/results
#   OUT=/somewhere bash experiments/kernel_study/run.sh
set -u
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-experiments/kernel_study/results}
MAIN="$PY -m hybridconv.sweeps --config=experiments/kernel_study/study.py --workdir=$OUT/fashion_mnist"
$MAIN data.train_size=100
$MAIN data.train_size=1000
$PY -m hybridconv.sweeps --config=experiments/kernel_study/random_features.py \
    --workdir="$OUT/random_features"
$MAIN
