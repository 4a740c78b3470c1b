#!/usr/bin/env bash
# Exactness gate for speed work on the HBM model: runs `trnsim mem` on every memory preset with stream,
# random and strided traffic, read ratios 1.0 and 0.7, open and closed page, per-bank and all-bank refresh
# (144 runs), plus a few variants (queue-limited and unloaded traffic, longer requests, two stacks, the
# xor-hashed map, refresh off), with two binaries, and compares the full --json results (except the
# simulator's own wall time and speed) and stderr. Any difference fails.
#
#   benchmarks/mem_exact.sh OLD_BIN NEW_BIN [REQUESTS]   (REQUESTS default 200000)
set -euo pipefail
old="$1"
new="$2"
requests="${3:-200000}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cases="$out/cases"
: >"$cases"
add() { echo "$*" >>"$cases"; }
for part in hbm2-2000-legacy hbm2-2400 hbm2e-3200 hbm3-6400 hbm3-5664 hbm3e-9600; do
    bytes=32
    [ "$part" = hbm2-2000-legacy ] && bytes=64
    for pattern in stream random strided; do
        for ratio in 1.0 0.7; do
            for page in open closed; do
                for refresh in per_bank all_bank; do
                    add --memory "$part" --pattern "$pattern" --stride 4160 --request-bytes "$bytes" \
                        --read-ratio "$ratio" --set "chip.memory.hbm.controller.page_policy=$page" \
                        --set "chip.memory.hbm.controller.refresh=$refresh"
                done
            done
        done
    done
    add --memory "$part" --pattern random --request-bytes "$bytes" --read-ratio 0.7 --outstanding 64
    add --memory "$part" --pattern random --request-bytes "$bytes" --outstanding 1 --read-ratio 0.5
    add --memory "$part" --pattern random --request-bytes 256 --read-ratio 0.7 --stacks 2
    add --memory "$part" --pattern random --request-bytes "$bytes" --read-ratio 0.7 \
        --set chip.memory.hbm.controller.address_map=xor_hashed --set chip.memory.hbm.controller.refresh=off
    add --memory "$part" --pattern stream --request-bytes "$bytes" --read-ratio 0.9 \
        --set chip.memory.hbm.controller.address_map=xor_hashed
done

run_one() {  # BIN TAG INDEX ARGS...
    local bin="$1" tag="$2" i="$3"
    shift 3
    "$bin" mem "$@" --requests "$requests" --json "$out/$tag.$i.json" >/dev/null 2>"$out/$tag.$i.err" || echo "exit $?" >>"$out/$tag.$i.err"
    jq -S 'del(.sim.wall_s, .sim.requests_per_s)' "$out/$tag.$i.json" >"$out/$tag.$i.cmp" 2>/dev/null || true
    cat "$out/$tag.$i.err" >>"$out/$tag.$i.cmp"
}
export -f run_one
export out requests

n=$(wc -l <"$cases")
i=0
while read -r line; do
    i=$((i + 1))
    # shellcheck disable=SC2086
    printf '%s\0%s\0%s\0%s\n' "$old" old "$i" "$line"
    printf '%s\0%s\0%s\0%s\n' "$new" new "$i" "$line"
done <"$cases" | tr '\n' '\0' | xargs -0 -n 4 -P 2 bash -c 'run_one "$0" "$1" "$2" $3'

fail=0
i=0
while read -r line; do
    i=$((i + 1))
    if ! cmp -s "$out/old.$i.cmp" "$out/new.$i.cmp" || [ ! -s "$out/old.$i.json" ]; then
        echo "DIFFERENT: $line"
        diff "$out/old.$i.cmp" "$out/new.$i.cmp" | head -20
        fail=1
    fi
done <"$cases"
[ "$fail" = 0 ] && echo "identical: $n configurations, $requests requests each"
exit "$fail"
