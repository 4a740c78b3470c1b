#!/usr/bin/env bash
# Speed of the HBM model (issue 3): requests simulated per wall-second for 2M 32 B reads on one
# hbm3-6400 stack, streaming and random (target: >= 5 M/s; DRAMsim3 does ~0.2 M/s on HBM2 here).
set -euo pipefail
# shellcheck source=benchmarks/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
for pattern in stream random; do
    printf '%-8s ' "$pattern"
    "$bin" mem --memory hbm3-6400 --pattern "$pattern" --request-bytes 32 --requests 2000000 --outstanding 8192 |
        grep -E 'bandwidth|simulator' | tr -s ' ' | tr '\n' ' '
    echo
done
