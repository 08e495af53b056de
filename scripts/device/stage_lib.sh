# Shared by the staged device scripts (sourced, after STAGES is set): ROOT, OUT, the GPU build dir B, the
# unpacked .deb prefix on the library path, log (to $OUT/summary.txt) and has (is a stage asked for?).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${OUT:-$ROOT/out}
B=$ROOT/build-gpu
export PREFIX=/tmp/msdeps
export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
mkdir -p "$OUT"
log() { echo "$*" | tee -a "$OUT/summary.txt"; }
has() { [[ " $STAGES " == *" $1 "* ]]; }
t0=$SECONDS
