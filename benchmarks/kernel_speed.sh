#!/usr/bin/env bash
# Speed targets of the kernel simulator (issue 2), printed so they can be tracked:
#  1. the textbook WS 1024x4096x4096 GEMM on a 128x128 array (serial preload, no fold overlap, memory
#     that never stalls): target < 1 s wall. SCALE-Sim v3 takes ~25 min and 13 GB for the same count.
#  2. trn1 4096x8192x8192 BF16 GEMM: target < 2 s wall and < 500 MB peak memory.
# Wall time is measured around the whole process (start-up included); the simulator's own figures
# (sim.wall_s, sim.peak_rss_bytes) come from the JSON result.
set -euo pipefail
# shellcheck source=benchmarks/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

field() {  # field FILE KEY -> first numeric value of "KEY": in the JSON
    tr -d ' \n' < "$1" | grep -o "\"$2\":[-0-9.e+]*" | head -1 | sed 's/.*://'
}

run_case() {  # run_case NAME TARGET_S TARGET_MB ARGS...
    local name=$1 target_s=$2 target_mb=$3
    shift 3
    local start end
    start=$(date +%s.%N)
    "$bin" "$@" --json "$work/$name.json" > /dev/null
    end=$(date +%s.%N)
    local wall sim_wall rss_mb te_cycles
    wall=$(echo "$end - $start" | bc -l)
    sim_wall=$(field "$work/$name.json" wall_s)
    rss_mb=$(echo "$(field "$work/$name.json" peak_rss_bytes) / 1000000" | bc -l)
    te_cycles=$(tr -d ' \n' < "$work/$name.json" | grep -o '"tensor_engine":{[^}]*}' | grep -o '"cycles":[0-9]*' | sed 's/.*://')
    printf '%-34s wall %6.3f s (target < %s s)  simulate %6.3f s  peak %5.0f MB (target < %s MB)  TE cycles %s\n' \
        "$name" "$wall" "$target_s" "$sim_wall" "$rss_mb" "$target_mb" "$te_cycles"
}

run_case textbook_ws_1024x4096x4096 1 - kernel gemm --chip trn2 --m 1024 --k 4096 --n 4096 \
    --set chip.core.tensor_engine.preload=serial --set chip.core.tensor_engine.fold_overlap=none \
    --set chip.core.tensor_engine.mm_init_latency=0 \
    --set chip.memory.model=ideal --set chip.memory.bandwidth=1000TB/s --set chip.core.dma.engine_bandwidth=100TB/s \
    --set chip.core.dma.transfer_latency=0s --set chip.core.dma.descriptor_cost=0s --set chip.memory.ideal.latency=0s
echo "  fold formula: 1024 folds x (2*128 + 128 + 1024 - 2) = 1439744 TE cycles"
run_case trn1_gemm_4096x8192x8192 2 500 kernel gemm --chip trn1 --m 4096 --k 8192 --n 8192
