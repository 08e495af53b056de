#!/usr/bin/env bash
# One GPU-box session: engine parity on CUDA (+ CPU with LibTorch 2.x), extended tokenizer references,
# and the planted model through Hugging Face. Fixtures come from .deps/shared (carried).
# Everything lands in $OUT/results.tgz plus $OUT/summary.txt.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/out}
R=/tmp/results; rm -rf $R; mkdir -p $R
export MECHSCOPE_SHARED=$ROOT/.deps/shared
export PREFIX=/tmp/msdeps
t0=$SECONDS
OUT=$R bash "$ROOT/scripts/device/engine_parity_cuda.sh" "$ROOT/build-gpu" > $R/parity_driver.log 2>&1
echo "parity rc=$? after $((SECONDS - t0)) s" >> $R/summary.txt
cat $R/engine_parity_summary.txt >> $R/summary.txt 2>/dev/null
OUT=$R python3 "$ROOT/scripts/device/tokenizer_make_refs.py" "$MECHSCOPE_SHARED/fixtures/tokenizers" > $R/tokrefs.log 2>&1
echo "tokenizer refs rc=$?" >> $R/summary.txt
export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
"$ROOT/build-gpu/bin/mechscope-cli" plant --out /tmp/planted > $R/plant.log 2>&1
python3 "$ROOT/scripts/device/planted_hf_check.py" /tmp/planted $R > $R/planted_hf.log 2>&1
echo "planted hf rc=$?" >> $R/summary.txt
tail -5 $R/planted_hf.log >> $R/summary.txt
cp $R/summary.txt "$OUT/summary.txt"
tar czf "$OUT/results.tgz" -C /tmp results
cat "$OUT/summary.txt"
