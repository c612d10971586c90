#!/usr/bin/env bash
# Runs every herald test: builds if needed, then CTest (C++) and pytest (Python).
#   scripts/test.sh            default build (build/)
#   scripts/test.sh asan       Address+UndefinedBehavior sanitizers (build-asan/)
#   scripts/test.sh tsan       ThreadSanitizer (build-tsan/)
# pytest runs tests/python and the Python half of tests/stress (the C++ half is in CTest).
# asan also runs pytest against its own build of the extension, with the ASan/UBSan runtimes
# preloaded into /usr/bin/python3 (leak detection off: CPython keeps objects until exit by
# design). tsan runs the C++ suite only: an uninstrumented interpreter makes TSan report races
# inside CPython itself.
set -uo pipefail
cd "$(dirname "$0")/.."
preset="${1:-default}"
build_dir=build
[ "$preset" = default ] || build_dir="build-$preset"

HERALD_PRESET="$preset" ./scripts/setup.sh || { echo "test: build failed" >&2; exit 1; }

supp="$PWD/tests/sanitizers"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$supp/lsan.supp}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$supp/tsan.supp}"

# A test that hangs is ended by its hang guard (faulthandler, exit=True), before pytest can show
# what it captured: the guard writes the stuck threads' stacks here, printed below.
hang_log="$(mktemp)"
trap 'rm -f "$hang_log"' EXIT
export HERALD_HANG_LOG="$hang_log"
report_hang() {
  if [ -s "$hang_log" ]; then
    echo "test: pytest hung and was stopped by its hang guard: $(head -1 "$hang_log")"
    cat "$hang_log"
  fi
}

status=0
ctest --test-dir "$build_dir" --output-on-failure -j"$(nproc)" --timeout 600 || status=1

if [ -d tests/python ] && ls tests/python/test_*.py >/dev/null 2>&1; then
  if [ "$preset" = default ]; then
    PYTHONPATH="$PWD/$build_dir/python${PYTHONPATH:+:$PYTHONPATH}" HERALD_BUILD_DIR="$PWD/$build_dir" \
      /usr/bin/python3 -m pytest -q tests/python tests/stress || { status=1; report_hang; }
  elif [ "$preset" = asan ]; then
    preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
    LD_PRELOAD="$preload" ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" \
      PYTHONPATH="$PWD/$build_dir/python${PYTHONPATH:+:$PYTHONPATH}" HERALD_BUILD_DIR="$PWD/$build_dir" \
      /usr/bin/python3 -m pytest -q tests/python tests/stress || { status=1; report_hang; }
  fi
fi
exit $status
