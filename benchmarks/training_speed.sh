#!/usr/bin/env bash
# Speed of `trnsim run` (issue 5 targets, on this 2-core machine):
#   - Llama 3 70B on trn2-ultraserver (64 chips; TP 32 PP 4 DP 2, selective recompute): under 10 s wall cold
#     (empty kernel cache), under 2 s with the cache warm, under 2 GiB peak memory;
#   - GPT-3 175B on 32 trn1.32xlarge (512 chips; TP 32 PP 8 DP 4, the calibration row of
#     reference/calibration.csv): under 30 s wall cold.
# Each prints the simulated step, sequences/s, the process's elapsed time and peak memory (children
# included: /usr/bin/time reports the largest process). BENCH_QUICK=1 runs only the 70B case.
set -euo pipefail
# shellcheck source=benchmarks/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run() {
    local label="$1" target="$2" gbs="$3"
    shift 3
    /usr/bin/time -f '%e %M' -o "$work/time" "$bin" run "$@" --gbs "$gbs" --json "$work/out.json" > /dev/null
    python3 - "$label" "$target" "$gbs" "$work/out.json" "$work/time" <<'PY'
import json, sys
label, target, gbs, path, tpath = sys.argv[1:]
j = json.load(open(path))
elapsed, rss_kb = open(tpath).read().split()
seqs = int(gbs) / j["step_time_s"]
print(f"{label:<40} step {j['step_time_s']:9.3f} s  {seqs:7.2f} seq/s  wall {float(elapsed):7.2f} s  "
      f"peak {int(rss_kb)/1024:6.0f} MB  target < {target} s")
PY
}
llama=(--cluster trn2-ultraserver --model llama3-70b --tp 32 --pp 4 --dp 2 --recompute selective)
run "llama3-70b trn2-ultraserver, cold" 10 1024 "${llama[@]}" --cache "$work/cache"
run "llama3-70b trn2-ultraserver, warm" 2 1024 "${llama[@]}" --cache "$work/cache"
[ "${BENCH_QUICK:-0}" = 1 ] && exit 0
run "gpt3-175b 32 x trn1.32xlarge, cold" 30 1024 --cluster trn1.32xlarge --nodes 32 --model gpt3-175b --tp 32 \
    --pp 8 --dp 4 --mbs 1 --seq 2048 --recompute selective --attention unfused
