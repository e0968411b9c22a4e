#!/usr/bin/env bash
# Fetches what the C++ runtime builds against into <repo>/third_party (gitignored), installing nothing:
#   third_party/onnxruntime/include/   ONNX Runtime C/C++ API headers (Debian trixie libonnxruntime-dev, 1.21)
#   third_party/onnxruntime/cmake/     that package's CMake config, kept for reference (CMake here uses
#                                      runtime/cpp/cmake/FindONNXRuntime.cmake: the Debian config names
#                                      libonnxruntime.so.1.21.0 and Debian-only dependencies)
#   third_party/onnxruntime/lib/       libonnxruntime.so.1 (+ .so) -> the onnxruntime Python wheel's library
#   third_party/nlohmann_json/include/ nlohmann/json.hpp (Debian nlohmann-json3-dev, header-only)
# The .deb files come from `apt-get download` with a temporary sources list and a private apt state
# folder, then `dpkg -x`; the system's apt configuration and package database are not touched.
# Idempotent: a second run only re-checks (use --force to fetch again).
#
# Environment: DFMA_THIRD_PARTY (default <repo>/third_party), DFMA_PYTHON (default <repo>/.venv/bin/python,
# else python3: the interpreter whose onnxruntime wheel provides the library), DFMA_ORT_LIB (a
# libonnxruntime.so.1.* to use instead), DFMA_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
tp=${DFMA_THIRD_PARTY:-$repo/third_party}
mirror=${DFMA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
force=0
[[ "${1:-}" == "--force" ]] && force=1

ort_dir=$tp/onnxruntime
json_dir=$tp/nlohmann_json
debs=$tp/debs

say() { echo "fetch_deps: $*"; }
die() { echo "fetch_deps: error: $*" >&2; exit 1; }

# --- the ONNX Runtime shared library (from the Python wheel unless DFMA_ORT_LIB names one) ----------
find_ort_lib() {
    if [[ -n "${DFMA_ORT_LIB:-}" ]]; then
        [[ -f "$DFMA_ORT_LIB" ]] || die "DFMA_ORT_LIB=$DFMA_ORT_LIB is not a file"
        echo "$DFMA_ORT_LIB"; return
    fi
    local py=${DFMA_PYTHON:-}
    if [[ -z "$py" ]]; then
        if [[ -x "$repo/.venv/bin/python" ]]; then py=$repo/.venv/bin/python; else py=python3; fi
    fi
    local capi
    capi=$("$py" -c 'import os, onnxruntime; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))' 2>/dev/null) \
        || die "no onnxruntime Python package for $py (pip install '.[cpu]', or set DFMA_ORT_LIB or DFMA_PYTHON)"
    local lib
    lib=$(ls "$capi"/libonnxruntime.so.1.* 2>/dev/null | head -n1)
    [[ -n "$lib" ]] || die "no libonnxruntime.so.1.* in $capi"
    echo "$lib"
}

link_ort_lib() {
    local lib; lib=$(find_ort_lib)
    mkdir -p "$ort_dir/lib"
    ln -sfn "$lib" "$ort_dir/lib/libonnxruntime.so.1"
    ln -sfn libonnxruntime.so.1 "$ort_dir/lib/libonnxruntime.so"
    basename "$lib" | sed 's/^libonnxruntime\.so\.//' > "$ort_dir/LIBRARY_VERSION"
    say "library  $ort_dir/lib/libonnxruntime.so.1 -> $lib"
}

headers_ok() {
    [[ -f "$ort_dir/include/onnxruntime_cxx_api.h" && -f "$json_dir/include/nlohmann/json.hpp" ]]
}

# libjpeg and libpng come from the system (small, stable C libraries): only say what to install.
for h in jpeglib.h png.h; do
    if ! echo "#include <stdio.h>
#include <$h>" | ${CXX:-c++} -x c++ -fsyntax-only - >/dev/null 2>&1; then
        say "warning: $h not found; install the image libraries: apt-get install libjpeg-dev libpng-dev"
    fi
done

if [[ $force == 0 ]] && headers_ok; then
    link_ort_lib
    say "headers already in $tp (ONNX Runtime $(cat "$ort_dir/HEADERS_VERSION" 2>/dev/null || echo '?')); nothing to fetch"
    exit 0
fi

command -v apt-get >/dev/null || die "apt-get not found: on a non-Debian system, set ONNXRUNTIME_ROOT to an official ONNX Runtime release and provide nlohmann/json.hpp (see runtime/cpp/README.md)"
command -v dpkg >/dev/null || die "dpkg not found"

# --- download the two .deb files with a private apt state -----------------------------------------
state=$(mktemp -d "${TMPDIR:-/tmp}/dfma-apt.XXXXXX")
trap 'rm -rf "$state"' EXIT
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$debs"
echo "deb $mirror trixie main" > "$state/sources.list"
apt_opts=(-q -o "Dir::Etc::SourceList=$state/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
          -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
          -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
say "apt-get update (trixie, private state in $state)"
apt-get "${apt_opts[@]}" update >/dev/null
(cd "$debs" && rm -f ./*.deb && apt-get "${apt_opts[@]}" download libonnxruntime-dev nlohmann-json3-dev >/dev/null)
ort_deb=$(ls "$debs"/libonnxruntime-dev_*.deb)
json_deb=$(ls "$debs"/nlohmann-json3-dev_*.deb)

# --- unpack (never install) -------------------------------------------------------------------------
x=$state/x; mkdir -p "$x/ort" "$x/json"
dpkg -x "$ort_deb" "$x/ort"
dpkg -x "$json_deb" "$x/json"
rm -rf "$ort_dir/include" "$ort_dir/cmake" "$json_dir"
mkdir -p "$ort_dir" "$json_dir"
cp -r "$x/ort/usr/include/onnxruntime" "$ort_dir/include"
cp -r "$x/ort/usr/lib/x86_64-linux-gnu/cmake/onnxruntime" "$ort_dir/cmake" 2>/dev/null || true
cp -r "$x/json/usr/include" "$json_dir/include"
dpkg-deb -f "$ort_deb" Version | sed 's/+.*//' > "$ort_dir/HEADERS_VERSION"
link_ort_lib
headers_ok || die "unpacking did not produce the expected headers"
say "headers  $ort_dir/include (ONNX Runtime $(cat "$ort_dir/HEADERS_VERSION"), $(basename "$ort_deb"))"
say "headers  $json_dir/include ($(basename "$json_deb"))"
