#!/usr/bin/env bash
# mechscope.sh — the README's two commands.
#   ./mechscope.sh run    install what is missing, build, open the GUI on the embedded planted model
#                         (no display: run the headless demo and print where its output went)
#   ./mechscope.sh test   install what is missing, build, run the whole ctest suite
#   ./mechscope.sh build  install + build only
# Environment: BUILD_DIR (default build), JOBS (default: cores), MECHSCOPE_CMAKE_ARGS (extra -D...),
#              MECHSCOPE_SKIP_INSTALL=1 (don't touch apt), CI=true (warnings as errors).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$(pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
JOBS=${JOBS:-$(getconf _NPROCESSORS_ONLN)}  # not nproc: it obeys OMP_NUM_THREADS

# libopenblas0-pthread: Debian's LibTorch otherwise runs on the reference BLAS (~1 GFLOP/s).
PACKAGES=(build-essential cmake ninja-build pkg-config ccache git
  libtorch-dev qt6-base-dev qt6-svg-dev libqcustomplot-dev libhdf5-dev libfmt-dev nlohmann-json3-dev
  libpcre2-dev libutf8proc-dev libcli11-dev libtomlplusplus-dev libgtest-dev libbenchmark-dev
  libopenblas0-pthread xvfb xauth python3 python3-h5py python3-numpy)

say() { printf '\033[1mmechscope:\033[0m %s\n' "$*" >&2; }

install_missing() {
  [ "${MECHSCOPE_SKIP_INSTALL:-0}" = 1 ] && return 0
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing missing Debian packages: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

build() {
  local werror=OFF
  [ "${CI:-}" = true ] && werror=ON
  export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
  export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
  export CCACHE_BASEDIR=$ROOT  # relative paths: a fresh clone elsewhere (CI) reuses the cache
  export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    say "configuring in $BUILD_DIR"
    # shellcheck disable=SC2086
    cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMECHSCOPE_WERROR=$werror \
      ${MECHSCOPE_CMAKE_ARGS:-}
  fi
  say "building with $JOBS jobs"
  local t0=$SECONDS
  cmake --build "$BUILD_DIR" -j "$JOBS"
  say "build took $((SECONDS - t0)) s"
}

run_app() {
  local bin=$BUILD_DIR/bin
  if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -x "$bin/mechscope" ]; then
    say "opening the GUI on the embedded planted model"
    exec "$bin/mechscope" --embedded "$@"
  fi
  local out=${MECHSCOPE_DEMO_OUT:-$ROOT/mechscope-demo}
  say "no display: running the headless demo (every analysis on the embedded model) into $out"
  "$bin/mechscope-cli" demo --out "$out" "$@"
  say "demo output is in $out"
}

run_tests() {
  say "running the test suite"
  # Threads: 2 tests at a time, each LibTorch run single-threaded enough not to oversubscribe.
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} QT_QPA_PLATFORM=offscreen \
    ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" --timeout 1500 "$@"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  run) install_missing; build; run_app "$@" ;;
  test) install_missing; build; run_tests "$@" ;;
  build) install_missing; build ;;
  *) echo "usage: $0 run|test|build [args]" >&2; exit 2 ;;
esac
