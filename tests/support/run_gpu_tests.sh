#!/usr/bin/env bash
# `ctest -L gpu`: runs one test binary's CUDA checks (gtest filter $2) with MECHSCOPE_TEST_DEVICE=cuda, and exits 77
# (ctest: skipped) when every selected test skipped because this machine or build has no CUDA.
#   run_gpu_tests.sh TEST_BINARY GTEST_FILTER
set -u
out=$(MECHSCOPE_TEST_DEVICE=cuda "$1" --gtest_filter="$2" 2>&1)
rc=$?
printf '%s\n' "$out"
[ "$rc" -ne 0 ] && exit "$rc"
if printf '%s\n' "$out" | grep -q '^\[  PASSED  \] 0 tests'; then
  echo "run_gpu_tests: nothing ran on CUDA here (no GPU or a CPU-only LibTorch): skipped"
  exit 77
fi
exit 0
