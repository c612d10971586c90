#!/bin/sh
# Replays every committed input of one fuzz target (CTest label "fuzz"): runs BINARY over each
# existing DIR with -runs=0, which executes every file once and mutates nothing. Exits non-zero
# when an input crashes, leaks or trips a sanitizer.
# Usage: replay.sh BINARY DIR...
set -eu
binary=$1
shift
for d in "$@"; do
  shift
  if [ -d "$d" ]; then set -- "$@" "$d"; fi
done
exec "$binary" -runs=0 -rss_limit_mb=2048 "$@"
