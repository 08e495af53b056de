# Sourced by the CLI process tests once they have set CLI: skips (exit 77) without the binary or python3,
# makes a temporary folder $tmp removed on exit, runs OpenMP single-threaded, and gives
# `check NAME CONDITION` (prints ok/FAIL, sets fail=1 on failure; the script ends with `exit $fail`).
[ -x "$CLI" ] || { echo "no CLI at $CLI"; exit 77; }
PY=${PY:-/usr/bin/python3}
$PY -c 'import json' 2>/dev/null || { echo "no python3"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; else echo "ok: $1"; fi; }
