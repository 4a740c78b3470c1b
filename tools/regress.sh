#!/usr/bin/env bash
# The regression gate (benchmarks/regression/README.md): builds trnsim (installing missing Debian packages
# first, like tools/test.sh), runs every case in benchmarks/regression/cases/ (sweep files)
# cold, and compares the results with the committed baselines in benchmarks/regression/baseline/ with
# `trnsim compare --drift` at tolerance 0%: any change of a gate metric, better or worse, fails.
#
#   tools/regress.sh                  run the gate; exit 0 unchanged, 1 drift (or a failed point), 2 bad arguments
#   tools/regress.sh --update "why"   run the cases and make the results the new baselines, appending a dated
#                                     line with the reason and what moved to benchmarks/regression/CHANGES.md
# Options:
#   --out DIR   keep the results, the compare tables and the JUnit XML (DIR/junit/CASE.xml) in DIR; default: a
#               temporary directory, removed when the gate passes and kept (its path printed) when it fails
#   -j N        worker processes per sweep (default: the cores)
# The build goes to $TRNSIM_BUILD_DIR (default build/), as for tools/test.sh.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=tools/deps.sh
source tools/deps.sh

reg=benchmarks/regression
tolerance=0%

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

update=0
reason=""
out=""
jobs=$(trnsim_jobs)
while [[ $# -gt 0 ]]; do
    case "$1" in
        --update)
            [[ $# -ge 2 ]] || { echo "regress.sh: --update needs the reason, e.g. --update \"HBM refresh fix\"" >&2; exit 2; }
            update=1
            reason=$2
            shift 2
            ;;
        --out)
            [[ $# -ge 2 ]] || usage
            out=$2
            shift 2
            ;;
        -j)
            [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || usage
            jobs=$2
            shift 2
            ;;
        -h | --help) usage ;;
        *)
            echo "regress.sh: unknown argument '$1'" >&2
            usage
            ;;
    esac
done
reason=$(printf '%s' "$reason" | tr '\n' ' ' | sed 's/^ *//; s/ *$//')
if [[ $update == 1 && -z "$reason" ]]; then
    echo "regress.sh: --update needs a reason (why the simulator's results change); nothing written" >&2
    exit 2
fi

trnsim_ensure_deps
trnsim_build "$TRNSIM_BUILD_DIR"
bin=$TRNSIM_BUILD_DIR/trnsim
[[ "$bin" == /* ]] || bin=$root/$bin

temporary=0
if [[ -z "$out" ]]; then
    out=$(mktemp -d "${TMPDIR:-/tmp}/trnsim-regress.XXXXXX")
    temporary=1
fi
mkdir -p "$out/junit"

# `trnsim compare --metric` arguments for a command, from benchmarks/regression/metrics.txt.
metric_args() {
    local cmd=$1 c m
    while read -r c m; do
        [[ -z "$c" || "$c" == \#* ]] && continue
        [[ "$c" == "$cmd" ]] && printf '%s\n' --metric "$m"
    done <"$reg/metrics.txt"
}

now_ns() { date +%s%N; }
# A case's verdict line, printed as the case finishes.
say() { printf '%s\n' "$1"; }
seconds_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

start_all=$(now_ns)
failed=()
changed=()
unchanged=()
shopt -s nullglob
cases=("$reg"/cases/*.yaml)
[[ ${#cases[@]} -gt 0 ]] || { echo "regress.sh: no cases in $reg/cases/" >&2; exit 2; }

echo "trnsim regression gate: ${#cases[@]} cases, tolerance $tolerance, $jobs workers, results in $out"
for spec in "${cases[@]}"; do
    name=$(basename "$spec" .yaml)
    cmd=$(sed -n 's/^command: *\([a-z]*\).*/\1/p' "$spec" | head -1)
    result=$out/$name.jsonl
    # Cold: no results, no kernel cache from an earlier run in this directory.
    rm -rf "$result" "$out/$name.csv" "$out/$name.sim.jsonl" "$out/$name.kernel-cache"
    t0=$(now_ns)
    sweep_rc=0
    "$bin" sweep "$spec" -o "$result" -j "$jobs" -q >"$out/$name.sweep.txt" 2>&1 || sweep_rc=$?
    secs=$(seconds_since "$t0")
    points=0
    [[ -f "$result" ]] && points=$(wc -l <"$result")
    if [[ $sweep_rc -ne 0 && $sweep_rc -ne 1 ]]; then
        # no usable output: a bad case file (2), an interruption (128 + signal) or a bug (3)
        say "$(printf '  %-16s %-11s %3d points %6s s  FAILED: trnsim sweep exit %d' "$name" "$cmd" "$points" "$secs" "$sweep_rc")"
        sed 's/^/    /' "$out/$name.sweep.txt"
        failed+=("$name")
        continue
    fi
    base=$reg/baseline/$name.jsonl
    mapfile -t margs < <(metric_args "$cmd")
    if [[ $update == 1 ]]; then
        if [[ $sweep_rc -ne 0 ]]; then
            say "$(printf '  %-16s %-11s %3d points %6s s  FAILED: points failed, see %s' "$name" "$cmd" "$points" "$secs" "$result")"
            failed+=("$name")
            continue
        fi
        verdict="new"
        if [[ -f "$base" ]]; then
            if "$bin" compare "$base" "$result" --drift --tolerance "$tolerance" ${margs[@]+"${margs[@]}"} \
                >"$out/$name.compare.txt" 2>&1; then
                verdict="unchanged"
                unchanged+=("$name")
            else
                verdict="changed: $(tail -1 "$out/$name.compare.txt")"
                changed+=("$name")
            fi
        else
            changed+=("$name (new)")
        fi
        say "$(printf '  %-16s %-11s %3d points %6s s  %s' "$name" "$cmd" "$points" "$secs" "$verdict")"
        continue
    fi
    if [[ ! -f "$base" ]]; then
        say "$(printf '  %-16s %-11s %3d points %6s s  FAILED: no baseline %s (tools/regress.sh --update "why")' "$name" "$cmd" "$points" "$secs" "$base")"
        failed+=("$name")
        continue
    fi
    compare_rc=0
    "$bin" compare "$base" "$result" --drift --tolerance "$tolerance" ${margs[@]+"${margs[@]}"} \
        --junit "$out/junit/$name.xml" >"$out/$name.compare.txt" 2>&1 || compare_rc=$?
    if [[ $compare_rc -eq 0 && $sweep_rc -eq 0 ]]; then
        say "$(printf '  %-16s %-11s %3d points %6s s  ok, %s metrics unchanged' "$name" "$cmd" "$points" "$secs" "$(tail -1 "$out/$name.compare.txt" | cut -d' ' -f1)")"
        continue
    fi
    say "$(printf '  %-16s %-11s %3d points %6s s  DRIFT: %s' "$name" "$cmd" "$points" "$secs" "$(tail -1 "$out/$name.compare.txt")")"
    failed+=("$name")
    # the rows that failed, with the table's header
    {
        echo "$name: $base -> $result"
        sed -n '2p' "$out/$name.compare.txt"
        grep -E 'DRIFT|REGRESSION|MISSING|trnsim: error' "$out/$name.compare.txt" || true
    } | sed 's/^/    /'
done

# A baseline without a case: a case removed without refreshing the baselines.
if [[ $update == 0 ]]; then
    for base in "$reg"/baseline/*.jsonl; do
        name=$(basename "$base" .jsonl)
        if [[ ! -f "$reg/cases/$name.yaml" ]]; then
            say "$(printf '  %-16s FAILED: baseline %s has no case %s/cases/%s.yaml' "$name" "$base" "$reg" "$name")"
            failed+=("$name")
        fi
    done
fi

total=$(seconds_since "$start_all")

if [[ $update == 1 ]]; then
    if [[ ${#failed[@]} -gt 0 ]]; then
        echo "trnsim regression gate: not updated, ${#failed[@]} case(s) failed: ${failed[*]} (results in $out)" >&2
        exit 1
    fi
    for spec in "${cases[@]}"; do
        name=$(basename "$spec" .yaml)
        cp "$out/$name.jsonl" "$reg/baseline/$name.jsonl"
        cp "$out/$name.csv" "$reg/baseline/$name.csv"
    done
    removed=()
    for base in "$reg"/baseline/*.jsonl; do
        name=$(basename "$base" .jsonl)
        if [[ ! -f "$reg/cases/$name.yaml" ]]; then
            rm -f "$base" "$reg/baseline/$name.csv"
            removed+=("$name")
        fi
    done
    commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    git diff --quiet HEAD -- src include configs models 2>/dev/null || commit="$commit + uncommitted changes"
    join() {
        local IFS=,
        local list="${*:-none}"
        echo "${list//,/, }"
    }
    line="- $(date -u +%Y-%m-%d) (on $commit): $reason. Changed: $(join "${changed[@]+"${changed[@]}"}")"
    [[ ${#removed[@]} -gt 0 ]] && line="$line; removed: $(join "${removed[@]}")"
    line="$line; unchanged: $(join "${unchanged[@]+"${unchanged[@]}"}")."
    printf '%s\n' "$line" >>"$reg/CHANGES.md"
    echo "trnsim regression gate: baselines updated in $reg/baseline/ (${total} s); logged in $reg/CHANGES.md:"
    echo "$line"
    echo "Review with git diff $reg/baseline/*.csv and commit the baselines with the change that moved them."
    [[ $temporary == 1 ]] && rm -rf "$out"
    exit 0
fi

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "trnsim regression gate: FAILED in ${total} s, ${#failed[@]} of ${#cases[@]} case(s): ${failed[*]}."
    echo "Results, compare tables and JUnit XML: $out. If the change is intended, refresh the baselines:"
    echo "  tools/regress.sh --update \"why the results change\""
    exit 1
fi
echo "trnsim regression gate: passed in ${total} s, ${#cases[@]} cases unchanged."
[[ $temporary == 1 ]] && rm -rf "$out"
exit 0
