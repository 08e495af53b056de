#!/usr/bin/env bash
# Build engine + CLI + tests on a GPU box against the LibTorch inside PyTorch, with no Qt and no HDF5.
# Small Debian -dev packages (fmt, nlohmann-json, PCRE2, utf8proc, CLI11, toml++, GTest, benchmark) come
# as .deb files in DEBS_DIR (made on a Debian machine with `apt-get download`, see README) and are
# unpacked under PREFIX — nothing is installed system-wide.
#   scripts/device/gpu_build.sh [BUILD_DIR]     env: DEBS_DIR (.deps/debs), PREFIX (/tmp/msdeps), TARGETS (default all)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build-gpu}
DEBS_DIR=${DEBS_DIR:-$ROOT/.deps/debs}
PREFIX=${PREFIX:-/tmp/msdeps}
mkdir -p "$PREFIX"
for d in "$DEBS_DIR"/*.deb; do dpkg-deb -x "$d" "$PREFIX"; done
TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
GEN=(); KEEP_GOING=()
# Ninja keeps building after an error (-k 0), so one device call reports every compile error at once.
command -v ninja >/dev/null && GEN=(-G Ninja) && KEEP_GOING=(-- -k 0)
cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DMECHSCOPE_GUI=OFF -DMECHSCOPE_HDF5=OFF -DMECHSCOPE_FMT_HEADER_ONLY=ON \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PREFIX/usr;$PREFIX/usr/lib/x86_64-linux-gnu/cmake" \
  -DCMAKE_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu" -DCMAKE_INCLUDE_PATH="$PREFIX/usr/include"
if [ -n "${TARGETS:-}" ]; then
  # shellcheck disable=SC2086
  cmake --build "$BUILD" -j "$(nproc)" --target $TARGETS "${KEEP_GOING[@]}"
else
  cmake --build "$BUILD" -j "$(nproc)" "${KEEP_GOING[@]}"
fi
echo "built in $BUILD"
