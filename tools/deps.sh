# shellcheck shell=bash
# Shared set-up for tools/run.sh and tools/test.sh (sourced, not executed).
#
# trnsim depends on Debian 12 packages only. trnsim_ensure_deps installs the
# missing ones when running as root, and otherwise prints the exact command to
# run and exits 1. trnsim_build configures a build directory once and then
# builds it incrementally (CMake re-configures by itself when a CMakeLists.txt
# changes).

TRNSIM_DEB_PACKAGES=(
    cmake g++ make pkg-config
    libsystemc-dev libeigen3-dev libfmt-dev libspdlog-dev catch2
    libcli11-dev nlohmann-json3-dev libyaml-cpp-dev
)

# Print the packages of TRNSIM_DEB_PACKAGES that are not installed, one a line.
trnsim_missing_packages() {
    local pkg status
    for pkg in "${TRNSIM_DEB_PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
        case "$status" in
            ii*) ;;
            *) printf '%s\n' "$pkg" ;;
        esac
    done
}

# True when apt has no package lists yet (a fresh container image).
trnsim_apt_lists_empty() {
    local f
    for f in /var/lib/apt/lists/*_Packages*; do
        [[ -e "$f" ]] && return 1
    done
    return 0
}

trnsim_ensure_deps() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "trnsim: dpkg-query not found: not a Debian system; install the equivalents of" \
            "${TRNSIM_DEB_PACKAGES[*]} yourself (continuing)" >&2
        return 0
    fi
    local missing=()
    local pkg
    while IFS= read -r pkg; do
        missing+=("$pkg")
    done < <(trnsim_missing_packages)
    if [[ ${#missing[@]} -eq 0 ]]; then
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "trnsim: missing Debian packages: ${missing[*]}" >&2
        echo "Install them with:" >&2
        echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        echo "(run 'sudo apt-get update' first if apt cannot find them), then run this script again." >&2
        exit 1
    fi
    echo "trnsim: installing missing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    if trnsim_apt_lists_empty; then
        apt-get update
    fi
    if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
        echo "trnsim: apt-get install failed; updating the package lists and retrying" >&2
        apt-get update
        apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

trnsim_jobs() {
    nproc 2>/dev/null || echo 2
}

# trnsim_build DIR [CMAKE_ARGS...]: configure DIR if it has no build system
# yet, then build it incrementally. Run from the repository root.
trnsim_build() {
    local dir=$1
    shift
    if [[ ! -f "$dir/CMakeCache.txt" || ( ! -f "$dir/Makefile" && ! -f "$dir/build.ninja" ) ]]; then
        cmake -S . -B "$dir" "$@"
    fi
    cmake --build "$dir" -j"$(trnsim_jobs)"
}

TRNSIM_BUILD_DIR=${TRNSIM_BUILD_DIR:-build}
