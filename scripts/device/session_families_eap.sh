#!/usr/bin/env bash
# GPU-box check of issue #23's new families and issue #22's long-input attribution, one call:
#   build   engine + analysis tests, bench_eap and mechscope-cli against PyTorch's LibTorch (gpu_build.sh)
#   parity  HF parity + generation of every family on CUDA fp32 (Families/Parity.*, Families/Generate.*),
#           then the engine suite and the EAP attention-path tests on CPU with LibTorch 2.x (fused SDPA path)
#   long    bench_eap long:… on a synth llama-1b (bf16) and qwen3-0.6b shape: EAP / EAP-IG at 8K–32K tokens,
#           time and peak CUDA memory against the explicit path's patterns
#   families  MoE/gpt-oss/dense engine tests on CUDA; sinks probe vs --materialize in bf16 on CUDA
#   clicheck  the CLI on 32K tokens: refused (exit 2) when a batch cannot fit, EAP when it can
#   edgebench  scripts/device/eap_bench.sh (cli + bench stages, bf16): exact edge patching re-timed
#   OUT=… STAGES="build parity long edgebench" LONG="8192,16384,32768" scripts/device/session_families_eap.sh
# Summary lines go to $OUT/summary.txt, logs to $OUT/*.log.
set -uo pipefail
STAGES=${STAGES:-"build parity long"}
LONG=${LONG:-"8192,16384,32768"}
# shellcheck source=scripts/device/stage_lib.sh
source "$(dirname "$0")/stage_lib.sh"
if has build; then
  TARGETS="mechscope_tests_engine mechscope_tests_analysis bench_eap mechscope-cli" \
    bash "$ROOT/scripts/device/gpu_build.sh" "$B" >"$OUT/build.log" 2>&1
  log "build rc=$? $((SECONDS - t0)) s"
  grep -E "error" "$OUT/build.log" | head -20 | tee -a "$OUT/summary.txt"
fi
if has parity; then
  MECHSCOPE_TEST_DEVICE=cuda "$B/tests/mechscope_tests_engine" --gtest_filter='Families/Parity.*:Families/Generate.*' \
    >"$OUT/parity_cuda.log" 2>&1
  log "cuda parity rc=$? $((SECONDS - t0)) s"
  grep -E '^\[parity\]|FAILED|PASSED' "$OUT/parity_cuda.log" | tee -a "$OUT/summary.txt"
  MECHSCOPE_TEST_DEVICE=cpu "$B/tests/mechscope_tests_engine" >"$OUT/engine_cpu_torch2.log" 2>&1
  log "engine cpu torch2 rc=$? $((SECONDS - t0)) s"
  grep -E 'FAILED|PASSED' "$OUT/engine_cpu_torch2.log" | tee -a "$OUT/summary.txt"
  "$B/tests/mechscope_tests_analysis" --gtest_filter='*EapAttentionPath*:*EapDefinition*' >"$OUT/eap_paths_torch2.log" 2>&1
  log "eap attention paths cpu torch2 rc=$? $((SECONDS - t0)) s"
  grep -E 'FAILED|PASSED|OK \]' "$OUT/eap_paths_torch2.log" | tee -a "$OUT/summary.txt"
fi
if has families; then  # issue #23 on CUDA: MoE/gpt-oss engine tests, gpt-oss bf16 sinks probe vs materialised
  MECHSCOPE_TEST_DEVICE=cuda "$B/tests/mechscope_tests_engine" --gtest_filter='*Moe*:*GptOss*:*Gemma*:*Phi3*:*Olmo*:*Dense*:*Cuda*' \
    >"$OUT/families_cuda.log" 2>&1
  log "families engine tests on cuda rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$OUT/families_cuda.log" | tr '\n' ' ')"
  python3 -c "import json; print(json.dumps([[3 + (7 * i + 11 * j) % 250 for j in range(120)] for i in range(2)]))" >/tmp/ids200.json
  for fam in gpt_oss gemma2 gemma3 mixtral; do
    for mode in probe materialize; do
      extra=""; [ $mode = materialize ] && extra="--materialize"
      $B/bin/mechscope-cli sinks --model "$ROOT/tests/data/families/$fam" --token-ids /tmp/ids200.json --no-prepend-bos --device cuda \
        --dtype bf16 $extra --json /tmp/sinks_${fam}_$mode.json >/tmp/sinks_${fam}_$mode.log 2>&1 || log "sinks $fam $mode failed: $(tail -2 /tmp/sinks_${fam}_$mode.log)"
    done
    python3 - "$fam" <<'PY' 2>&1 | tee -a "$OUT/summary.txt"
import json, sys
f = sys.argv[1]
a, b = json.load(open(f"/tmp/sinks_{f}_probe.json")), json.load(open(f"/tmp/sinks_{f}_materialize.json"))
def walk(x, y, path=""):
    if isinstance(x, dict):
        return max([walk(x[k], y.get(k), path + "/" + k) for k in x if k in y and k not in ("timing", "attention_path")] or [0.0])
    if isinstance(x, list) and x and isinstance(x[0], (list, float, int)):
        return max([walk(u, v, path) for u, v in zip(x, y)] or [0.0])
    if isinstance(x, float) and isinstance(y, (float, int)):
        return abs(x - y)
    return 0.0
print(f"sinks {f} cuda bf16: max |probe - materialised| over every number {walk(a, b):.3g}")
PY
  done
fi
if has long; then
  CLI=$B/bin/mechscope-cli
  for preset in llama-1b qwen3-0.6b; do
    fam=llama; [ "$preset" = qwen3-0.6b ] && fam=qwen3
    M=/tmp/synth-$preset
    [ -f $M/config.json ] || $CLI synth --family $fam --preset $preset --dtype bf16 --seed 1 --out $M >/dev/null
    log "== bench_eap $preset bf16 long:$LONG"
    "$B/bench/bench_eap" $M "long:$LONG" cuda bf16 0 ${STEPS:-5} 2>&1 | tee "$OUT/long_$preset.log" | tee -a "$OUT/summary.txt"
    log "rc=${PIPESTATUS[0]} $((SECONDS - t0)) s"
  done
fi
if has clicheck; then
  CLI=$B/bin/mechscope-cli
  [ -f /tmp/synth-llama-1b/config.json ] || $CLI synth --family llama --preset llama-1b --dtype bf16 --seed 1 --out /tmp/synth-llama-1b >/dev/null
  # The CLI on a 32K-token prompt pair: a pass that cannot fit is refused before compute (exit 2); EAP runs.
  python3 -c "
import json, random
random.seed(0); n = 32768
c = [random.randrange(32000) for _ in range(n)]; x = list(c)
for i in range(n // 3, 2 * n // 3): x[i] = random.randrange(32000)
print(json.dumps({'clean_ids': c, 'corrupted_ids': x, 'answer': 'a', 'answer_id': 5, 'incorrect': 'b', 'incorrect_id': 6}))" >/tmp/long32k.jsonl
  M=/tmp/synth-llama-1b
  $CLI eap --model $M --dataset /tmp/long32k.jsonl --device cuda --dtype bf16 --method eap-ig --max-batch-rows 64 \
    --json /tmp/eap_refused.json >"$OUT/cli_refused.log" 2>&1
  log "cli eap-ig 64 rows × 32K: rc=$? (2 expected) $(tail -c 400 "$OUT/cli_refused.log")"
  /usr/bin/time -v $CLI eap --model $M --dataset /tmp/long32k.jsonl --device cuda --dtype bf16 --method eap \
    --json /tmp/eap_32k.json >"$OUT/cli_eap32k.log" 2>&1
  log "cli eap 32K: rc=$? $(grep -E 'timing|Elapsed|Maximum resident' "$OUT/cli_eap32k.log" | tr '\n' ' ')"
fi
if has edgebench; then  # issue #22: bf16 exact edge patching re-timed after 74aaa93 (GPT-2-small shape, 32 IOI pairs)
  OUT=$OUT/eapbench STAGES="cli bench" DTYPES=bf16 SAMPLE=${SAMPLE:-64} bash "$ROOT/scripts/device/eap_bench.sh"
  log "edge bench rc=$? $((SECONDS - t0)) s"; cat "$OUT/eapbench/summary.txt" >>"$OUT/summary.txt"
fi
log "total $((SECONDS - t0)) s"
