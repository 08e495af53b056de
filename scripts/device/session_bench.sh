#!/usr/bin/env bash
# GPU-box session 2: build, isolate the engine CLI tests under LibTorch 2.x on CPU, then the attention
# benchmarks (mechscope sinks/waad-fai vs HF eager) on a qwen3-0.6b-shaped bf16 model.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/out}
R=/tmp/results; rm -rf $R; mkdir -p $R
export MECHSCOPE_SHARED=$ROOT/.deps/shared PREFIX=/tmp/msdeps
t0=$SECONDS
bash "$ROOT/scripts/device/gpu_build.sh" "$ROOT/build-gpu" > $R/build.log 2>&1; echo "build rc=$? $((SECONDS-t0)) s" > $R/summary.txt
export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
T=$ROOT/build-gpu/tests/mechscope_tests_engine
for f in 'Cli.*' 'Errors*.*' 'Hooks*.*' 'Generate*.*'; do
  MECHSCOPE_TEST_DEVICE=cpu timeout 300 "$T" --gtest_filter="$f" > "$R/engine_cpu_$(echo $f | tr -dc 'A-Za-z').log" 2>&1
  echo "engine cpu torch2 $f rc=$?" >> $R/summary.txt
done
CLI=$ROOT/build-gpu/bin/mechscope-cli
D=$MECHSCOPE_SHARED/fixtures/models/gpt2; echo '[[1, 2, 1000]]' > /tmp/big.json; echo '[[1,2,3,4]]' > /tmp/ids.json
$CLI run --model $D --token-ids /tmp/big.json > $R/cli_big.log 2>&1; echo "cli big rc=$?" >> $R/summary.txt
$CLI run --model $D --token-ids /tmp/ids.json --dtype fp16 > $R/cli_fp16.log 2>&1; echo "cli fp16 rc=$?" >> $R/summary.txt
$CLI run --model $D --prompt hello > $R/cli_prompt.log 2>&1; echo "cli prompt rc=$?" >> $R/summary.txt
t1=$SECONDS
OUT=/tmp/attn-bench timeout 420 bash "$ROOT/scripts/device/attention_bench.sh" "$ROOT/build-gpu" > $R/attention_bench.log 2>&1
echo "attention bench rc=$? $((SECONDS-t1)) s" >> $R/summary.txt
cp /tmp/attn-bench/attention_bench.jsonl $R/ 2>/dev/null; cp /tmp/attn-bench/*.log $R/ 2>/dev/null
tail -30 $R/attention_bench.log >> $R/summary.txt
cp $R/summary.txt "$OUT/summary.txt"; tar czf "$OUT/results.tgz" -C /tmp results
cat "$OUT/summary.txt"
