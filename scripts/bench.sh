#!/usr/bin/env bash
# Runs herald's benchmarks (issue 6, S7 of issue 16, the durable road of issue 14) and writes bench/results/latest.{json,md} (+ a PNG plot)
# and bench/results/python.{json,md} (scenario 5, bench/python_bench.py).
#
#   scripts/bench.sh            # install extras if missing, build build-bench, run, report
#
# Installs its own extra Debian packages (only what is missing; root or sudo), configures
# build-bench in Release with benchmarks on, builds the bench targets only (HERALD_BENCH_JOBS,
# default 1), runs every scenario with 5 repetitions and reports medians and goal ratios.
# Not part of .ci/run or scripts/test.sh: speed lives here, never in timed tests.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config libzmq3-dev cppzmq-dev nlohmann-json3-dev libre2-dev
  libspdlog-dev libcli11-dev libcpp-httplib-dev libbenchmark-dev libboost-dev libjemalloc-dev postgresql libpq-dev
  python3 python3-matplotlib python3-pyee python3-blinker)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

build_dir=build-bench
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" -DHERALD_BUILD_BENCH=ON -DCMAKE_BUILD_TYPE=Release \
    -DHERALD_BUILD_PYTHON=OFF -DHERALD_BUILD_TESTS=OFF >/dev/null
fi
targets=(bench_inline bench_pipeline bench_memory bench_fanout zmq_scenario4 s7_sender herald durable_bench)
cmake --build "$build_dir" -j"${HERALD_BENCH_JOBS:-1}" --target "${targets[@]}" 2>&1 |
  { grep -vE '^\[ *[0-9]+%\]|^-- ' || true; }

reps="${HERALD_BENCH_REPETITIONS:-5}"
raw=bench/results/raw
mkdir -p "$raw"
gbench=(--benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true
  --benchmark_format=json)

for b in bench_inline bench_pipeline bench_fanout; do
  echo "bench: $b" >&2
  "$build_dir/bench/$b" "${gbench[@]}" --benchmark_out="$raw/$b.json" \
    --benchmark_out_format=json >/dev/null
done

echo "bench: bench_memory x$reps" >&2
: >"$raw/bench_memory.jsonl"
for _ in $(seq "$reps"); do
  # A miss (exit 1) is recorded in the report, not fatal here.
  "$build_dir/bench/bench_memory" >>"$raw/bench_memory.jsonl" 2>>"$build_dir/bench_memory.log" || true
done

# Scenario 4: ZeroMQ across processes (ipc and tcp x 64 B / 1 KiB / 16 KiB payloads; raw bytes,
# hand-rolled JSON, herald, herald via `herald proxy`), about 3-4 minutes. Per-run progress goes
# to $build_dir/zmq_scenario4.log. HERALD_BENCH_ZMQ_SCALE scales the events per run.
echo "bench: zmq_scenario4 x$reps (scenario 4, separate processes)" >&2
rm -f "$raw/zmq_throughput.md"  # the single-process predecessor's output
timeout 900 "$build_dir/bench/zmq_scenario4" run --reps "$reps" --herald "$build_dir/herald" \
  --scale "${HERALD_BENCH_ZMQ_SCALE:-1}" --out "$raw/zmq_scenario4.json" \
  2>"$build_dir/zmq_scenario4.log" || echo "zmq_scenario4 failed (see $build_dir/zmq_scenario4.log)" >&2

# Scenario S7 (issue 16): `herald run` end to end (a 300,000-line JSON Lines file to audit +
# metrics subscribers; the --listen variant fed by bench/s7_sender; the inline_dispatch
# variant) against the naive Python script bench/s7_naive.py, paired per repetition, about
# 30 s per repetition. Writes $raw/s7.json; HERALD_BENCH_S7_LINES changes the input size.
echo "bench: s7 x$reps (herald run end to end vs a naive Python script)" >&2
/usr/bin/python3 bench/s7_bench.py --herald "$build_dir/herald" --sender "$build_dir/bench/s7_sender" \
  --lines "${HERALD_BENCH_S7_LINES:-300000}" --reps "$reps" --work "$build_dir/s7" \
  --out "$raw/s7.json" 2>"$build_dir/s7.log" || echo "s7 failed (see $build_dir/s7.log)" >&2

# The durable road (issue 14): DurablePublisher against plain libpq programs writing the same
# rows (one multi-row INSERT per batch; one INSERT per event), consumption by 1 and 4 groups,
# and publish -> handler latency, on its own throwaway cluster with fsync on, as shipped. One
# JSON object per scenario and repetition in $raw/durable.jsonl.
echo "bench: durable_bench x$reps (PostgreSQL, fsync on)" >&2
: >"$raw/durable.jsonl"
for _ in $(seq "$reps"); do
  timeout 900 "$build_dir/bench/durable_bench" >>"$raw/durable.jsonl" 2>>"$build_dir/durable_bench.log" ||
    echo "durable_bench failed (see $build_dir/durable_bench.log)" >&2
done

/usr/bin/python3 bench/report.py "$raw" bench/results

# Scenario 5 (Python): needs the Python extension from build/ (scripts/test.sh or the README's
# build step); writes bench/results/python.{json,md}. A failure is reported, not fatal.
if ls build/python/herald/_herald*.so >/dev/null 2>&1; then
  echo "bench: python_bench x$reps" >&2
  PYTHONPATH=build/python HERALD_BENCH_REPETITIONS="$reps" /usr/bin/python3 bench/python_bench.py \
    >"$raw/python_bench.md" 2>&1 || echo "python_bench failed (see $raw/python_bench.md)" >&2
else
  echo "bench: skipping python_bench (build/python/herald/_herald*.so not built)" >&2
fi
