#!/usr/bin/env bash
# Builds scripts/device/far_sums_bench.cu with nvcc (sm_90) and times every block shape of the probe's far-sums kernel
# at each length in LENGTHS on Qwen3-0.6B's heads (16 query, 8 kv, d_head 128).
#   scripts/device/far_sums_bench.sh [OUT_DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-/tmp}
nvcc -O3 -std=c++17 -gencode=arch=compute_90,code=sm_90 -lineinfo -Xptxas=-v -I"$ROOT" "$ROOT/scripts/device/far_sums_bench.cu" \
  -o "$OUT/far_sums_bench" 2>"$OUT/far_sums_bench_build.log"
grep -oE "FarSumsShapeILi[0-9]+ELi[0-9]+ELb[01]|[0-9]+ bytes spill stores|Used [0-9]+ registers" "$OUT/far_sums_bench_build.log" | head -40 || true
for n in ${LENGTHS:-8192 32768}; do "$OUT/far_sums_bench" "$n" 16 8 "${REPS:-20}"; done
