#!/usr/bin/env bash
# Build trnsim and its tests (installing missing Debian packages first) and
# run the whole test suite through CTest.
#   tools/test.sh              normal build in $TRNSIM_BUILD_DIR (default build/)
#   tools/test.sh --sanitize   separate Debug build in build-asan/ with
#                              AddressSanitizer + UndefinedBehaviorSanitizer
#                              (also: TRNSIM_SANITIZE=1 tools/test.sh)
# Any other arguments are passed to ctest (e.g. -R cli).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=tools/deps.sh
source tools/deps.sh

sanitize=${TRNSIM_SANITIZE:-0}
ctest_args=()
for arg in "$@"; do
    case "$arg" in
        --sanitize) sanitize=1 ;;
        *) ctest_args+=("$arg") ;;
    esac
done

trnsim_ensure_deps

if [[ "$sanitize" == 1 ]]; then
    dir=${TRNSIM_ASAN_BUILD_DIR:-build-asan}
    mkdir -p "$dir"
    # SystemC runs each thread process as a coroutine on its own stack. ASan's
    # "fake stacks" for use-after-return detection break across those stack
    # switches (a SEGV inside the first SC_THREAD when it is on), so that check
    # is off; everything else, leak detection included, stays on.
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_stack_use_after_return=0:detect_leaks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    trnsim_build "$dir" -DTRNSIM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
else
    dir=$TRNSIM_BUILD_DIR
    trnsim_build "$dir"
fi

# Every test takes seconds (under ASan too): a hung one fails after 5 minutes
# instead of CTest's default 25.
exec ctest --test-dir "$dir" --output-on-failure --timeout 300 -j"$(trnsim_jobs)" ${ctest_args[@]+"${ctest_args[@]}"}
