#!/usr/bin/env bash
# Sweep throughput (issue 6 target: >= 2 points/s on 2 cores with a warm kernel cache): 100 training steps of
# Llama 3 8B on trn2.48xlarge, 10 NeuronLink bandwidths x 10 HBM pin clocks (chip.memory.hbm.ck sets the HBM
# bandwidth of the chips' HBM model; chip.memory.bandwidth only feeds the ideal memory model).
#
# A first sweep fills the kernel cache (cold, one set of kernels per HBM clock: slow); a second sweep of the
# same points into a new output, sharing that cache's kernel timings, is timed (the collective memo records
# the first sweep left, memo-*.records, are removed first: a sweep of new points has none). Prints the warm
# points per second; then a third sweep with the records the second left, as a rerun of the sweep sees.
# SWEEP_SPEED_POINTS=4 runs a 2 x 2 corner of the grid instead (a quick check of the script, not the target).
set -euo pipefail
# shellcheck source=benchmarks/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
jobs="${JOBS:-$(nproc)}"

links="[25GB/s, 50GB/s, 75GB/s, 100GB/s, 125GB/s, 150GB/s, 175GB/s, 200GB/s, 225GB/s, 256GB/s]"
clocks="[0.8GHz, 0.9GHz, 1.0GHz, 1.1GHz, 1.2GHz, 1.3GHz, 1.416GHz, 1.5GHz, 1.6GHz, 1.7GHz]"
if [ "${SWEEP_SPEED_POINTS:-100}" = 4 ]; then
    links="[100GB/s, 200GB/s]"
    clocks="[1.2GHz, 1.416GHz]"
fi
cat > "$work/sweep.yaml" <<YAML
command: run
base: {model: llama3-8b, cluster: trn2.48xlarge}
grid:
  cluster.link.bandwidth: $links
  chip.memory.hbm.ck: $clocks
YAML

sweep() {
    local out="$1"
    local start end
    start=$(date +%s.%N)
    "$bin" sweep "$work/sweep.yaml" -j "$jobs" -q -o "$work/$out" --cache "$work/cache" > /dev/null || true
    end=$(date +%s.%N)
    python3 - "$work/$out" "$start" "$end" <<'PY'
import json, sys
path, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
records = [json.loads(l) for l in open(path)]
ok = sum(r["status"] == "ok" for r in records)
print(f"{len(records)} points ({ok} ok) in {end - start:.1f} s: {len(records) / (end - start):.3f} points/s")
PY
}
echo "cold cache (fills $work/cache), -j $jobs:"
sweep cold.jsonl
echo "warm kernel cache, no memo records, -j $jobs (target >= 2 points/s on 2 cores):"
rm -f "$work"/cache/memo-*.records
sweep warm.jsonl
echo "warm kernel cache and memo records (a rerun), -j $jobs:"
sweep rerun.jsonl
for f in warm rerun; do
    cmp -s "$work/cold.jsonl" "$work/$f.jsonl" && echo "cold and $f records are byte-identical" ||
        echo "cold and $f records DIFFER"
done
