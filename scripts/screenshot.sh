#!/usr/bin/env bash
# Renders the workbench's main window with a real attention map of the embedded planted model under Xvfb
# and saves it as a build artefact.
#   scripts/screenshot.sh [BUILD_DIR] [OUT.png] [extra mechscope args, e.g. --head 3.0 --settings FILE]
# Default: BUILD_DIR=build, OUT=BUILD_DIR/artifacts/mainwindow.png. Exit 77 (skip) without xvfb-run.
set -euo pipefail
build="${1:-build}"
out="${2:-$build/artifacts/mainwindow.png}"
shift $(( $# > 2 ? 2 : $# ))
app="$build/bin/mechscope"
[[ -x "$app" ]] || { echo "screenshot.sh: $app not built (cmake --build $build --target mechscope)" >&2; exit 2; }
command -v xvfb-run >/dev/null || { echo "screenshot.sh: xvfb-run not installed; skipping" >&2; exit 77; }
mkdir -p "$(dirname "$out")"
settings="$(mktemp -d)/mechscope-screenshot.ini"  # never the user's settings
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
xvfb-run -a -s "-screen 0 1600x1000x24" "$app" --embedded --screenshot "$out" --settings "$settings" "$@"
python3 - "$out" <<'PY' 2>/dev/null || true
import struct, sys
with open(sys.argv[1], 'rb') as f:
    head = f.read(24)
assert head[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
w, h = struct.unpack('>II', head[16:24])
print(f"screenshot.sh: {sys.argv[1]} {w}x{h}")
PY
