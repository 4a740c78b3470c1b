#!/usr/bin/env bash
# Does doubling the link bandwidth ever slow a training step? 24 `trnsim run` configurations (the default,
# other parallelism and placements, torus shapes, trn1/trn2/trn3 clusters and UltraServers, GPT-3 175B on 512
# chips), each at its cluster preset's interconnect bandwidths (NeuronLink links and NeuronSwitch ports,
# `keys` below) and at twice all of them. Prints the two step times and the change per configuration; exits
# 1 when a step is slower with the faster links (docs/training.md, "Monotonicity"). About 10 minutes on 2
# cores; one kernel cache is shared by all runs (CACHE_DIR, default a temporary directory). CASES="a b" runs
# only the configurations of those names.
set -euo pipefail
shopt -s inherit_errexit  # a failed run inside $(step ...) stops the script
# shellcheck source=benchmarks/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cache="${CACHE_DIR:-$work/cache}"

cases=(
    "default|"
    "fp8full|--dtype fp8 --recompute full"
    "g175|--cluster trn1.32xlarge --nodes 32 --model gpt3-175b --tp 32 --pp 8 --dp 4 --mbs 1 --gbs 1024 --seq 2048 --recompute selective"
    "nodes2pp|--cluster trn2.48xlarge --nodes 2 --tp 16 --pp 4 --dp 2 --recompute selective"
    "plc2|--tp 8 --pp 2 --dp 4 --recompute selective --placement dp,tp,pp"
    "pp4|--tp 4 --pp 4 --dp 4 --recompute selective"
    "pp4int|--tp 8 --pp 4 --dp 2 --recompute selective --schedule interleaved --virtual-stages 2"
    "ring16|--set cluster.topology=ring:16 --tp 4 --pp 4 --dp 4 --recompute selective"
    "spoff|--sp off --zero 0 --recompute selective"
    "t2x8|--set cluster.topology=torus2d:2x8 --tp 8 --pp 2 --dp 4 --recompute selective"
    "t3d|--set cluster.topology=torus3d:2x2x4 --tp 4 --pp 4 --dp 4 --recompute selective"
    "t3u144|--cluster trn3-ultraserver-144 --gbs 1152 --dp 36"
    "t3u64|--cluster trn3-ultraserver-64 --dp 16"
    "t3u64pp|--cluster trn3-ultraserver-64 --pp 2 --dp 8"
    "tp4dp16|--tp 4 --dp 16 --recompute full"
    "tp8dp8|--tp 8 --dp 8 --recompute selective"
    "tp8pp2|--tp 8 --pp 2 --dp 4 --recompute selective"
    "trn1pp8|--cluster trn1.32xlarge --model gpt3-6.7b --tp 4 --pp 8 --dp 1 --seq 2048 --gbs 64"
    "trn1x2|--cluster trn1.32xlarge --nodes 2 --model gpt3-1.3b --tp 8 --pp 1 --dp 8 --seq 2048 --gbs 1024"
    "trn1x4|--cluster trn1.32xlarge --nodes 4 --model gpt3-6.7b --tp 8 --pp 2 --dp 8 --seq 2048 --gbs 1024"
    "us70b|--cluster trn2-ultraserver --model llama3-70b --tp 32 --pp 4 --dp 2 --recompute selective"
    "us70int|--cluster trn2-ultraserver --model llama3-70b --tp 32 --pp 4 --dp 2 --recompute selective --gbs 256 --schedule interleaved --virtual-stages 2"
    "us8b|--cluster trn2-ultraserver --tp 16 --pp 2 --dp 8"
    "usz2|--cluster trn2-ultraserver --set cluster.topology=torus3d:4x4x4 --model llama3-8b --tp 8 --pp 4 --dp 8 --recompute selective"
)

# The chip-to-chip interconnect's bandwidths: NeuronLink links (torus, ring, full), the third torus
# dimension's, and both levels of NeuronSwitch ports (switch topologies). Not EFA.
keys=(cluster.link.bandwidth cluster.zlink.bandwidth cluster.switch.l1.port_bandwidth cluster.switch.l2.port_bandwidth)

# One step time (s) of `trnsim run ARGS` with every interconnect bandwidth at MULT times the cluster's preset.
step() {
    local mult="$1" args="$2" cluster=trn2.48xlarge
    if [[ "$args" =~ --cluster\ ([^ ]+) ]]; then cluster=${BASH_REMATCH[1]}; fi
    local sets=() k v
    for k in "${keys[@]}"; do
        v=$("$bin" describe --cluster "$cluster" | awk -v k="$k" '$1 == k {print $3}')
        sets+=(--set "$k=$(scale "$v" "$mult")")
    done
    rm -f "$work/out.json"
    # shellcheck disable=SC2086  # ARGS is a list of words
    "$bin" run $args "${sets[@]}" --cache "$cache" --json "$work/out.json" > /dev/null
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["step_time_s"])' "$work/out.json"
}
# "256GB/s" x 2 -> "512GB/s" (the number times MULT, the unit kept).
scale() {
    python3 -c 'import re, sys; m = re.fullmatch(r"([0-9.]+)(.*)", sys.argv[1]); print(f"{float(m[1]) * float(sys.argv[2]):g}{m[2]}")' "$1" "$2"
}

slower=0
printf '%-10s %12s %12s %9s\n' case "step (s)" "2x links" change
for c in "${cases[@]}"; do
    name=${c%%|*}
    args=${c#*|}
    [[ -z "${CASES:-}" || " $CASES " == *" $name "* ]] || continue
    a=$(step 1 "$args")
    b=$(step 2 "$args")
    line=$(python3 -c 'import sys; a, b = map(float, sys.argv[2:]); print(f"{sys.argv[1]:<10} {a:12.4f} {b:12.4f} {100 * (b / a - 1):+8.3f}%" + ("  SLOWER" if b > a else ""))' "$name" "$a" "$b")
    echo "$line"
    [[ "$line" == *SLOWER ]] && slower=$((slower + 1))
done
echo "$slower configuration(s) slower with twice the link bandwidth"
[ "$slower" = 0 ]
