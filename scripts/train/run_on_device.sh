#!/usr/bin/env bash
# The one command for the GPU box (one H200): trains the three small test models in parallel (each
# process has its own time cap, all finish in about 7 minutes) and writes, under $OUT,
# <model>.tar (the Hugging Face folder; a crash checkpoint instead if a stage after training failed)
# and log_<model>.txt. Tokenizers come from $TOK (default .train-input/, a copy of
# ../shared/fixtures/tokenizers/{llama2,gpt2} carried to the box). Unpack the tars into
# tests/data/trained/.
#   run: bash scripts/train/run_on_device.sh   (from the repository root, with OUT set)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out/trained}
TOK=${TOK:-.train-input}
WORK=${WORK:-/tmp/trained}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -c 'import torch, transformers, tokenizers, safetensors; print("torch", torch.__version__, "transformers", transformers.__version__, "tokenizers", tokenizers.__version__, "safetensors", safetensors.__version__, "cuda", torch.cuda.is_available())'
read -r -a models <<< "${MODELS:-llama2-niah mistral-sw gpt2-ioi}"
pids=()
for m in "${models[@]}"; do
  ( python3 scripts/train/train_tiny_models.py --model "$m" --out "$WORK" --tokenizers "$TOK" "$@" \
      > "$OUT/log_$m.txt" 2>&1; rc=$?
    tar -C "$WORK" -cf "$OUT/$m.tar" $(cd "$WORK" && ls -d "$m" "$m.ckpt.pt" 2>/dev/null)
    echo "$m finished with exit code $rc"; exit $rc ) &
  pids+=($!)
done
# progress while they run
while kill -0 "${pids[@]}" 2>/dev/null; do
  sleep 60
  for m in "${models[@]}"; do echo "== $m: $(grep -E 'step [0-9]+ loss' "$OUT/log_$m.txt" | tail -1)"; done
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
for m in "${models[@]}"; do
  echo "================ $m"
  grep -vE 'step [0-9]+ loss' "$OUT/log_$m.txt" | grep -vE '^\s*$' | tail -40
done
ls -la "$OUT"
exit $rc
