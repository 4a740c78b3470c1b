#!/usr/bin/env bash
# Build trnsim (installing missing Debian packages first) and run it.
# Without arguments it runs the default simulation; any arguments go to trnsim,
# e.g. tools/run.sh kernel gemm --m 4096 --k 4096 --n 4096 --chip trn1
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=tools/deps.sh
source tools/deps.sh

trnsim_ensure_deps
trnsim_build "$TRNSIM_BUILD_DIR" >&2
exec "$TRNSIM_BUILD_DIR/trnsim" "$@"
