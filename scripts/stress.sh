#!/usr/bin/env bash
# The long variant of the stress suite (issue 13): more rounds and several seeds of the C++ bus
# stress under ThreadSanitizer and of the Python stress on the normal build.
#   scripts/stress.sh [rounds] [seeds]     defaults: 40 rounds, 5 seeds
# Each seed is printed; rerun one with HERALD_STRESS_SEED=<seed> HERALD_STRESS_ROUNDS=<n>.
set -uo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-40}"
seeds="${2:-5}"
./scripts/setup.sh || exit 1
HERALD_PRESET=tsan ./scripts/setup.sh || exit 1
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/sanitizers/tsan.supp}"
status=0
for i in $(seq 1 "$seeds"); do
  seed=$(( $(date +%s) + i * 7919 ))
  echo "== stress seed $seed, $rounds rounds"
  HERALD_STRESS_SEED=$seed HERALD_STRESS_ROUNDS=$rounds build-tsan/tests/herald_stress_tests || status=1
  HERALD_STRESS_SEED=$seed HERALD_STRESS_ROUNDS=$rounds PYTHONPATH="$PWD/build/python" \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/stress || status=1
done
exit $status
