#!/usr/bin/env bash
# Speed of the interconnect and collective models (issue 4 targets):
#   - a 1 GiB all-reduce over the 64-chip trn2-ultraserver (auto: ring-bidir): under 1 s wall;
#   - a 1 GiB all-to-all over the 144-chip trn3-ultraserver-144 (mesh through two switch levels): under 2 s.
# Each prints the simulated time and the simulator's wall time (sim.wall_s: elaboration and simulation) and
# the process's elapsed time and peak memory.
set -euo pipefail
# shellcheck source=benchmarks/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run() {
    local label="$1" target="$2"
    shift 2
    local tmp
    tmp="$(mktemp)"
    /usr/bin/time -f '%e %M' -o "$tmp.time" "$bin" collective "$@" --json "$tmp" > /dev/null
    python3 - "$label" "$target" "$tmp" "$tmp.time" <<'PY'
import json, sys
label, target, path, tpath = sys.argv[1:]
j = json.load(open(path))
elapsed, rss_kb = open(tpath).read().split()
print(f"{label:<44} {j['algorithm']:<11} simulated {j['time_s']*1e3:8.3f} ms  busbw {j['busbw_gbps']:7.1f} GB/s  "
      f"wall {j['sim']['wall_s']:.3f} s (process {float(elapsed):.2f} s, {int(rss_kb)/1024:.0f} MB)  target < {target} s")
PY
    rm -f "$tmp" "$tmp.time"
}
run "all-reduce 1 GiB, trn2-ultraserver (64 chips)" 1 --cluster trn2-ultraserver --op all-reduce --bytes 1GiB
run "all-to-all 1 GiB, trn3-ultraserver-144" 2 --cluster trn3-ultraserver-144 --op all-to-all --bytes 1GiB
