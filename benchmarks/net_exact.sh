#!/usr/bin/env bash
# Exactness check for speed work on the interconnect models (links, DMA rings, wake-up queue, fabric, memory):
# runs the same training steps (`trnsim run`) and collectives (`trnsim collective`) with two binaries and
# compares their JSON results with the simulator's own costs left out (sim.wall_s, kernel_wall_s and the
# kernel cache's hit and miss counts, which depend on what the cache held). Everything else must be equal:
# every number, to the bit.
#
#   benchmarks/net_exact.sh REF_BIN NEW_BIN [WORK_DIR]
#
# WORK_DIR (default /tmp/net_exact) keeps the reference results in WORK_DIR/ref; they are reused while
# they exist, so a series of steps runs the reference once. The kernel cache (WORK_DIR/cache) is shared and
# warmed by the reference run. NET_EXACT_QUICK=1 runs only the default training step and a few collectives.
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,12p "$0" >&2; exit 2; }
ref_bin="$1"
new_bin="$2"
work="${3:-/tmp/net_exact}"
export SC_COPYRIGHT_MESSAGE=DISABLE
mkdir -p "$work/ref" "$work/new" "$work/cache"

cases=(
    "run_default|run"
    "run_8b_tp8_pp2|run --model llama3-8b --cluster trn2.48xlarge --tp 8 --pp 2 --dp 4 --gbs 64 --allow-oom"
    "run_sweep_corner|run --set cluster.link.bandwidth=25GB/s --set chip.memory.hbm.ck=0.8GHz"
    "coll_ar_sweep|collective --cluster trn2.48xlarge --op all-reduce --bytes 1KiB:1GiB"
    "coll_a2a_144|collective --cluster trn3-ultraserver-144 --op all-to-all --bytes 64MiB"
    "coll_nodes2|collective --cluster trn2.48xlarge --nodes 2 --op all-reduce --bytes 1KiB:256MiB"
)
if [ "${NET_EXACT_QUICK:-0}" != 1 ]; then
    cases+=(
        "run_70b_us|run --cluster trn2-ultraserver --model llama3-70b --tp 32 --pp 4 --dp 2 --recompute selective --gbs 64"
        "run_70b_trn3_64|run --cluster trn3-ultraserver-64 --model llama3-70b --tp 32 --pp 4 --dp 2 --recompute selective --gbs 64"
        "run_trn1_nodes4|run --cluster trn1.32xlarge --nodes 4 --tp 8 --pp 4 --dp 4 --gbs 16 --seq 2048 --model gpt3-13b --recompute selective"
        "coll_rs_sweep|collective --cluster trn2.48xlarge --op reduce-scatter --bytes 1KiB:1GiB --dtype bf16"
        "coll_ag_ring|collective --cluster trn2.48xlarge --op all-gather --algorithm ring --bytes 1KiB:256MiB"
        "coll_ar_rdh|collective --cluster trn2.48xlarge --op all-reduce --algorithm rdh --bytes 4KiB:64MiB"
        "coll_ar_mesh|collective --cluster trn2.48xlarge --op all-reduce --algorithm mesh --bytes 1KiB:16MiB"
        "coll_ar_torus|collective --cluster trn2.48xlarge --op all-reduce --algorithm torus2d --bytes 64KiB:256MiB"
        "coll_ar_bidir_us|collective --cluster trn2-ultraserver --op all-reduce --bytes 1GiB"
        "coll_a2a_144_sweep|collective --cluster trn3-ultraserver-144 --op all-to-all --bytes 1KiB:1GiB"
        "coll_a2a_64|collective --cluster trn3-ultraserver-64 --op all-to-all --bytes 1MiB:64MiB"
        "coll_ar_trn3_64|collective --cluster trn3-ultraserver-64 --op all-reduce --bytes 1KiB:256MiB"
        "coll_bcast|collective --cluster trn2.48xlarge --op broadcast --root 5 --bytes 1KiB:64MiB"
        "coll_sendrecv|collective --cluster trn2.48xlarge --op send-recv --bytes 1KiB:64MiB"
        "coll_ranks8|collective --cluster trn2.48xlarge --op all-reduce --ranks 8 --bytes 1MiB:64MiB"
        "coll_ideal|collective --cluster trn2.48xlarge --op all-reduce --bytes 1KiB:256MiB --set cluster.memory_model=ideal"
        "coll_rpc4|collective --cluster trn2.48xlarge --op all-gather --bytes 4KiB:64MiB --set cluster.ranks_per_chip=4"
        "coll_trn1_nodes2|collective --cluster trn1.32xlarge --nodes 2 --op reduce-scatter --bytes 1MiB:128MiB"
        "coll_efa_a2a|collective --cluster trn2.48xlarge --nodes 2 --op all-to-all --bytes 64KiB:16MiB"
        "coll_ring16|collective --cluster trn2.48xlarge --op all-reduce --algorithm ring --bytes 1KiB:64MiB --set cluster.topology=ring:16 --set cluster.link.credits=1"
    )
fi

run_case() {
    local bin="$1" out="$2" args="$3"
    local cmd
    read -r -a cmd <<< "$args"
    if [ "${cmd[0]}" = run ]; then
        "$bin" "${cmd[@]}" --cache "$work/cache" --json "$out" > /dev/null
    else
        "$bin" "${cmd[@]}" --json "$out" > /dev/null
    fi
}

fail=0
for c in "${cases[@]}"; do
    name="${c%%|*}"
    args="${c#*|}"
    if ! [ -s "$work/ref/$name.json" ] && ! run_case "$ref_bin" "$work/ref/$name.json" "$args"; then
        printf '%-22s reference failed\n' "$name"
        fail=1
        continue
    fi
    rm -f "$work/new/$name.json"
    start=$(date +%s.%N)
    run_case "$new_bin" "$work/new/$name.json" "$args" || true
    end=$(date +%s.%N)
    if python3 - "$work/ref/$name.json" "$work/new/$name.json" <<'PY'; then
import json, sys
IGNORED = {"wall_s", "kernel_wall_s", "kernel_cache_hits", "kernel_cache_misses"}
def strip(x):
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k not in IGNORED}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x
try:
    a, b = (strip(json.load(open(p))) for p in sys.argv[1:3])
except (OSError, ValueError) as e:
    print(f"    {e}")
    sys.exit(1)
if a == b:
    sys.exit(0)
def diff(x, y, path):
    if type(x) != type(y) or not isinstance(x, (dict, list)):
        if x != y:
            print(f"    {path}: {x!r} != {y!r}")
        return
    if isinstance(x, dict):
        for k in sorted(set(x) | set(y)):
            diff(x.get(k), y.get(k), f"{path}.{k}")
    else:
        if len(x) != len(y):
            print(f"    {path}: length {len(x)} != {len(y)}")
        for i, (u, v) in enumerate(zip(x, y)):
            diff(u, v, f"{path}[{i}]")
diff(a, b, "")
sys.exit(1)
PY
        printf '%-22s identical (%.1f s)\n' "$name" "$(echo "$end - $start" | bc)"
    else
        printf '%-22s DIFFERS\n' "$name"
        fail=1
    fi
done
[ $fail = 0 ] && echo "all ${#cases[@]} cases identical" || { echo "some cases differ"; exit 1; }
