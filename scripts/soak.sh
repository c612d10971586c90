#!/usr/bin/env bash
# Soak test of herald across processes: publishers and subscribers (`herald publish`,
# `herald tail`) through `herald proxy`, with kill -9 and restart of subscribers and of one
# publisher and one deliberately slow subscriber; checks sent == received + gaps for every
# publisher/subscriber pair, that nothing crashed, and that RSS stays bounded.
#   scripts/soak.sh                      3 minutes against build/herald
#   scripts/soak.sh --duration 30        the CI variant (CTest test herald_soak, label soak)
#   scripts/soak.sh --help               every option (publishers, rates, seed, RSS bound, ...)
# The binary: --herald FILE, or $HERALD_BIN, or $HERALD_BUILD_DIR/herald, or build/herald.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec /usr/bin/python3 "$here/soak.py" "$@"
