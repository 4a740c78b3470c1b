# shellcheck shell=bash
# Set-up shared by the benchmark scripts (sourced, not run): the repository root, the trnsim binary
# ($TRNSIM_BIN, default build/trnsim; the script stops when it is missing), SystemC's banner off, and a
# temporary directory $work removed when the script exits.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${TRNSIM_BIN:-$root/build/trnsim}"
[ -x "$bin" ] || { echo "build trnsim first (tools/run.sh or tools/test.sh): $bin not found" >&2; exit 1; }
export SC_COPYRIGHT_MESSAGE=DISABLE
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
