#!/usr/bin/env bash
# Runs the kernel study's main study size by size (cheapest first), then the random-features
# study. Resumable: run it again (on this or another machine with the committed records) and
# finished points are skipped; Ctrl-C or SIGTERM stops it cleanly.
#   bash experiments/kernel_study/run.sh            # results under experiments/kernel_study/results
#   bash experiments/kernel_study/run.sh pilot      # first rerun the budget pilot and its rule
#   OUT=/somewhere bash experiments/kernel_study/run.sh
# The budgets come from the committed pilot (results/pilot/budgets.json); the pilot's own runs
# are not committed, so `pilot` retrains it (about an hour here) and rewrites the budgets.
set -u
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-experiments/kernel_study/results}
STUDY=("$PY" -m hybridconv.studies.command)
if [ "${1:-}" = pilot ]; then
  "${STUDY[@]}" --config=experiments/kernel_study/pilot.py --workdir="$OUT/pilot" || exit $?
  $PY -m experiments.kernel_study.budgets --pilot="$OUT/pilot" || exit $?
fi
# Two points at a time, one CPU device each: both cores stay busy through each point's
# compilation and evaluations (the main study's points all use these settings).
MAIN=("${STUDY[@]}" --config=experiments/kernel_study/study.py --workdir="$OUT/fashion_mnist"
      --jobs=2 --config.cpu_devices=1)
for size in 100 1000 10000; do
  "${MAIN[@]}" data.train_size=$size || exit $?
done
# The 55,000-image points include one arm chosen from the finished 10,000-image runs.
if $PY -c "from experiments.kernel_study import study; raise SystemExit(bool(study.LARGEST_SIZE_EXTRA_ARM))"; then
  echo "every 10,000-image point has finished: run \`$PY -m experiments.kernel_study.extra_arm\`," \
       "copy its choice into study.LARGEST_SIZE_EXTRA_ARM, then run this script again" >&2
  exit 3
fi
"${MAIN[@]}" data.train_size=55000 || exit $?
"${STUDY[@]}" --config=experiments/kernel_study/random_features.py --workdir="$OUT/random_features"
