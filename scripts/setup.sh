#!/usr/bin/env bash
# Installs what herald needs from Debian (only what is missing), then configures and builds.
# Idempotent and quiet when everything is already there. Works as root or through sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config ccache libjemalloc-dev
  libzmq3-dev cppzmq-dev nlohmann-json3-dev libre2-dev libspdlog-dev libcli11-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-dev pybind11-dev python3-pytest python3-zmq mypy
  postgresql libpq-dev python3-psycopg)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

preset="${HERALD_PRESET:-default}"
build_dir=build
[ "$preset" = default ] || build_dir="build-$preset"
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake --preset "$preset" >/dev/null
fi
# Progress lines are dropped; warnings and errors are shown. With pipefail the pipeline's
# status is the build's (the filter itself always succeeds).
cmake --build "$build_dir" -j"$(nproc)" 2>&1 | { grep -vE '^\[ *[0-9]+%\]|^-- ' || true; }
