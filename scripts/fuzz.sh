#!/usr/bin/env bash
# Fuzzes herald's input surfaces with libFuzzer (tests/fuzz/): the wire envelope decoder, the step
# completion parser, the configuration loader, glob patterns and the payload schema checker.
#
#   scripts/fuzz.sh                  every target for HERALD_FUZZ_SECONDS (default 60) each
#   scripts/fuzz.sh --smoke          CI: every target for HERALD_FUZZ_SECONDS (default 10) each
#   scripts/fuzz.sh wire pattern     only these targets
#   scripts/fuzz.sh --replay         only replay the committed inputs (no fuzzing)
#
# Steps: installs what is missing (clang-14, its libFuzzer/sanitizer runtimes, herald's build
# dependencies; apt-get, through sudo when not root), configures and builds the `fuzz` preset
# (build-fuzz/, target herald_fuzz), replays every committed input (tests/fuzz/corpus/<target>/
# and tests/fuzz/regressions/<target>/, CTest label "fuzz"), then fuzzes each target in turn.
# The committed seeds are copied to a scratch folder first, so fuzzing never writes to them:
#   build-fuzz/fuzz-run/corpus/<target>/    the working corpus (seeds + what the run found)
#   build-fuzz/fuzz-run/findings/<target>/  crash-*, leak-*, timeout-*, oom-* inputs
#   build-fuzz/fuzz-run/logs/<target>.log   libFuzzer's output
# Prints a summary table (target, seconds, executions, corpus size, result) and exits 1 if any
# input crashed, leaked, hung or tripped a sanitizer (the report is printed), 2 if the build
# failed.
#
# Environment: HERALD_FUZZ_SECONDS (per target), HERALD_FUZZ_RSS_MB (default 2048),
# HERALD_FUZZ_WORKDIR (default build-fuzz/fuzz-run).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
replay_only=0
targets=()
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=1 ;;
    --replay) replay_only=1 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz: unknown option $arg" >&2; exit 2 ;;
    *) targets+=("$arg") ;;
  esac
done
all_targets=(wire json_codec step_completion config pattern schema)
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  [ -f "tests/fuzz/${t}_fuzz.cpp" ] || { echo "fuzz: unknown target '$t' (${all_targets[*]})" >&2; exit 2; }
done

if [ "$smoke" = 1 ]; then
  seconds="${HERALD_FUZZ_SECONDS:-10}"
else
  seconds="${HERALD_FUZZ_SECONDS:-60}"
fi
rss_mb="${HERALD_FUZZ_RSS_MB:-2048}"
build_dir=build-fuzz
work="${HERALD_FUZZ_WORKDIR:-$build_dir/fuzz-run}"

# Largest input per target: enough for real envelopes, configs and schemas, small enough to
# keep executions fast.
max_len_of() {
  case "$1" in
    config) echo 8192 ;;
    pattern) echo 2048 ;;
    *) echo 4096 ;;
  esac
}

# --- packages -----------------------------------------------------------------------------
# clang-14 + libclang-rt-14-dev carry -fsanitize=fuzzer,address,undefined (libFuzzer's runtime is
# libclang_rt.fuzzer in libclang-rt-14-dev, so libfuzzer-14-dev is not needed); llvm-14 has
# llvm-symbolizer for readable reports; the rest is what herald's build needs.
packages=(build-essential cmake pkg-config ccache clang-14 libclang-rt-14-dev llvm-14
  libzmq3-dev cppzmq-dev nlohmann-json3-dev libre2-dev libspdlog-dev libcli11-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "fuzz: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- build --------------------------------------------------------------------------------
start_build=$SECONDS
# Always configure (a few seconds) so that changes to the preset reach an existing build-fuzz/.
cmake --preset fuzz >/dev/null || { echo "fuzz: configure failed" >&2; exit 2; }
# Progress lines are dropped; warnings and errors are shown.
if ! cmake --build "$build_dir" -j"$(nproc)" --target herald_fuzz 2>&1 | { grep -vE '^\[ *[0-9]+%\]|^-- ' || true; }; then
  echo "fuzz: build failed" >&2
  exit 2
fi
echo "fuzz: built in $((SECONDS - start_build)) s"

# Shorter allocation stacks and a smaller quarantine than ASan's defaults roughly double the
# executions per second of allocation-heavy targets; leaks and use-after-free are still caught.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:malloc_context_size=10:quarantine_size_mb=64}"
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
  export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# --- replay the committed inputs ----------------------------------------------------------
status=0
mkdir -p "$work/logs"
if ctest --test-dir "$build_dir" -L '^fuzz$' --output-on-failure --timeout 300 >"$work/logs/replay.log" 2>&1; then
  echo "fuzz: committed inputs replayed: $(grep -E 'tests passed' "$work/logs/replay.log" || echo ok)"
else
  cat "$work/logs/replay.log"
  echo "fuzz: a committed input fails (see above)" >&2
  status=1
fi
[ "$replay_only" = 1 ] && exit $status

# --- fuzz ---------------------------------------------------------------------------------
rows=()
for t in "${targets[@]}"; do
  binary="$build_dir/tests/fuzz/herald_fuzz_$t"
  corpus="$work/corpus/$t"
  findings="$work/findings/$t"
  log="$work/logs/$t.log"
  rm -rf "$corpus" "$findings"
  mkdir -p "$corpus" "$findings" "$(dirname "$log")"
  for d in "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t"; do
    if [ -d "$d" ]; then cp -R "$d/." "$corpus/"; fi
  done
  dict=()
  [ -f "tests/fuzz/dict/$t.dict" ] && dict=("-dict=tests/fuzz/dict/$t.dict")

  echo "fuzz: $t for ${seconds} s"
  t0=$SECONDS
  rc=0
  "$binary" "$corpus" "${dict[@]}" -max_total_time="$seconds" -rss_limit_mb="$rss_mb" \
    -max_len="$(max_len_of "$t")" -timeout=25 -print_final_stats=1 \
    -artifact_prefix="$findings/" >"$log" 2>&1 || rc=$?
  elapsed=$((SECONDS - t0))

  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  corpus_size=$(find "$corpus" -type f | wc -l)
  artifacts=$(find "$findings" -type f | wc -l)
  if [ "$rc" -eq 0 ] && [ "$artifacts" -eq 0 ] &&
     ! grep -qE '^==[0-9]+==ERROR|runtime error:|herald fuzz finding|^SUMMARY: ' "$log"; then
    result=ok
  else
    result="FAILED (exit $rc, $artifacts input(s))"
    status=1
    echo "---- $t: finding (tail of $log) ----"
    grep -nE 'herald fuzz finding|^==[0-9]+==ERROR|runtime error:|^SUMMARY: ' "$log" | head -n 5 || true
    tail -n 40 "$log"
    for a in "$findings"/*; do
      [ -f "$a" ] || continue
      echo "reproduce: $binary $a"
      echo "keep it:   cp $a tests/fuzz/regressions/$t/   (and fix the bug)"
    done
    echo "----"
  fi
  rows+=("$t|$elapsed|${execs:-?}|$corpus_size|$result")
done

echo
printf '%-16s %8s %12s %8s  %s\n' target seconds executions corpus result
for row in "${rows[@]}"; do
  IFS='|' read -r t elapsed execs corpus_size result <<<"$row"
  printf '%-16s %8s %12s %8s  %s\n' "$t" "$elapsed" "$execs" "$corpus_size" "$result"
done
exit $status
