#!/usr/bin/env bash
# Runs both studies of experiments/kernel_study: the main study size by size (cheapest first),
# then the random-features study. Resumable: run it again (on this or another machine with the
# committed records) and finished points are skipped.
#   bash experiments/kernel_study/run.sh            # results under experiments/kernel_study/results
#   OUT=/somewhere bash experiments/kernel_study/run.sh
set -u
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-experiments/kernel_study/results}
MAIN="$PY -m hybridconv.sweeps --config=experiments/kernel_study/study.py --workdir=$OUT/fashion_mnist"
for size in 100 1000 10000 0; do  # 0: all 60,000 images
  $MAIN data.train_size=$size
done
$PY -m hybridconv.sweeps --config=experiments/kernel_study/random_features.py \
    --workdir="$OUT/random_features"
