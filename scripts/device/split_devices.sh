#!/usr/bin/env bash
# GPU-box check of issue #23's layer split (`--device cuda:0,cuda:1`), one call:
#   build   engine tests and mechscope-cli against PyTorch's LibTorch (gpu_build.sh)
#   engine  DevicePlan* on the CPU, DevicePlanCuda.* (every family fixture: one GPU against the split, logits
#           and every cached hook)
#   cli     tests/cli/split_devices.sh with cuda:0 against the split: every analysis' JSON numbers
#   big     a synth llama-7b (bf16): `run` top-k logits on cuda:0 against the split, and the split's load and
#           forward times
# The split is cuda:0,cuda:1 on a machine with two GPUs, else the forced cuda:0,cpu.
#   OUT=… STAGES="build engine cli" scripts/device/split_devices.sh
set -uo pipefail
STAGES=${STAGES:-"build engine cli"}
# shellcheck source=scripts/device/stage_lib.sh
source "$(dirname "$0")/stage_lib.sh"
GPUS=$(python3 -c 'import torch;print(torch.cuda.device_count())' 2>/dev/null || echo 0)
SPLIT=$([ "$GPUS" -ge 2 ] && echo "cuda:0,cuda:1" || echo "cuda:0,cpu")
log "gpus=$GPUS split=$SPLIT"
if has build; then
  TARGETS="mechscope_tests_engine mechscope-cli" bash "$ROOT/scripts/device/gpu_build.sh" "$B" >"$OUT/build.log" 2>&1
  log "build rc=$? $((SECONDS - t0)) s"
  grep -E "error" "$OUT/build.log" | head -20 | tee -a "$OUT/summary.txt"
fi
if has engine; then
  "$B/tests/mechscope_tests_engine" --gtest_filter='DevicePlan*' >"$OUT/device_plan.log" 2>&1
  log "DevicePlan* rc=$? $((SECONDS - t0)) s"
  grep -E 'FAILED|PASSED|SKIPPED|Failure' "$OUT/device_plan.log" | head -30 | tee -a "$OUT/summary.txt"
fi
if has cli; then
  PYTHON=$(command -v python3) SPLIT_DEVICES="cuda:0 $SPLIT" SPLIT_TOLERANCE=${SPLIT_TOLERANCE:-1e-4} \
    bash "$ROOT/tests/cli/split_devices.sh" "$B/bin/mechscope-cli" >"$OUT/split_cli.log" 2>&1
  log "cli split rc=$? $((SECONDS - t0)) s"
  grep -E 'ok:|FAIL|largest' "$OUT/split_cli.log" | tee -a "$OUT/summary.txt"
fi
if has big; then
  M=/tmp/llama7b
  [ -f $M/config.json ] || "$B/bin/mechscope-cli" synth --family llama --preset llama-7b --dtype bf16 --out $M >"$OUT/big.log" 2>&1
  # 1K tokens across two GPUs; the forced cuda:0,cpu split runs half of a 7B on the CPU, so fewer there.
  NTOK=${BIG_TOKENS:-$([ "$GPUS" -ge 2 ] && echo 1024 || echo 128)}
  python3 -c "import json; print(json.dumps([[1 + (7 * i) % 31000 for i in range($NTOK)]]))" >/tmp/ids1k.json
  for dev in cuda:0 "$SPLIT"; do
    "$B/bin/mechscope-cli" run --model $M --token-ids /tmp/ids1k.json --device "$dev" --dtype bf16 --top-k 10 \
      >"$OUT/big_$dev.txt" 2>"$OUT/big_$dev.err"
    log "run 7b ($NTOK tokens) on $dev rc=$? $(grep -E 'timing|load' "$OUT/big_$dev.err" | tr '\n' ' ')"
  done
  if diff <(grep -v "device" "$OUT/big_cuda:0.txt") <(grep -v "device" "$OUT/big_$SPLIT.txt") >/dev/null; then
    log "7b top-10 identical on cuda:0 and $SPLIT"
  else
    log "7b top-10 differ:"; diff "$OUT/big_cuda:0.txt" "$OUT/big_$SPLIT.txt" | head -20 | tee -a "$OUT/summary.txt"
  fi
fi
log "done $((SECONDS - t0)) s"
