#!/usr/bin/env bash
# Engine parity on the GPU box: builds engine + CLI + tests with scripts/device/gpu_build.sh
# (-DMECHSCOPE_GUI=OFF -DMECHSCOPE_HDF5=OFF, PyTorch's LibTorch 2.x), then runs the engine tests
#   1. on CUDA in fp32 (MECHSCOPE_TEST_DEVICE=cuda): HF parity of the six fixture families
#      (logits, hidden states, attention patterns ≤ 1e-4; explicit and fused attention paths) and
#      KV-cache generation == recomputation;
#   2. the whole engine suite on CPU with LibTorch 2.x (covers the fused SDPA path on CPU).
# Writes to $OUT (default ./out): engine_parity_cuda.log/.xml, engine_cpu_torch2.log/.xml and
# engine_parity_summary.txt (the "[parity]" lines: max abs errors per family and path).
#   scripts/device/engine_parity_cuda.sh [BUILD_DIR]   env: MECHSCOPE_SHARED, PREFIX, DEBS_DIR, OUT
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build-gpu}
OUT=${OUT:-$ROOT/out}
PREFIX=${PREFIX:-/tmp/msdeps}
mkdir -p "$OUT"
if [ -z "${MECHSCOPE_SHARED:-}" ]; then
  for c in "$ROOT/../shared" "$ROOT/shared"; do
    [ -d "$c/fixtures/models" ] && MECHSCOPE_SHARED=$(cd "$c" && pwd) && break
  done
fi
[ -n "${MECHSCOPE_SHARED:-}" ] || { echo "no shared/fixtures found: set MECHSCOPE_SHARED" >&2; exit 2; }
export MECHSCOPE_SHARED
PREFIX=$PREFIX bash "$ROOT/scripts/device/gpu_build.sh" "$BUILD" >"$OUT/engine_build.log" 2>&1 || {
  tail -50 "$OUT/engine_build.log"; echo "build failed (see engine_build.log)" >&2; exit 1; }
export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
TESTS="$BUILD/tests/mechscope_tests_engine"
{ nvidia-smi -L || true; python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' || true; } \
  | tee "$OUT/engine_env.txt"

MECHSCOPE_TEST_DEVICE=cuda "$TESTS" --gtest_filter='Families/Parity.*:Families/Generate.*' \
  --gtest_output=xml:"$OUT/engine_parity_cuda.xml" 2>&1 | tee "$OUT/engine_parity_cuda.log"
rc_cuda=${PIPESTATUS[0]}
MECHSCOPE_TEST_DEVICE=cpu "$TESTS" --gtest_output=xml:"$OUT/engine_cpu_torch2.xml" 2>&1 | tee "$OUT/engine_cpu_torch2.log"
rc_cpu=${PIPESTATUS[0]}
grep -h '^\[parity\]' "$OUT/engine_parity_cuda.log" "$OUT/engine_cpu_torch2.log" >"$OUT/engine_parity_summary.txt"
echo "cuda rc=$rc_cuda cpu(torch2) rc=$rc_cpu" | tee -a "$OUT/engine_parity_summary.txt"
[ "$rc_cuda" = 0 ] && [ "$rc_cpu" = 0 ]
