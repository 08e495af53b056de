#!/usr/bin/env bash
# The Python side of the retrieval-grid comparison (issue #24, scripts/device/niah_grid_hf.py) against
# `mechscope-cli retrieval` on the CPU: the same grid through scripts/reference's pure-PyTorch forward
# (--backend ref, fp32) must build the same prompts, decode the same ids and give every head the same
# score, exactly. llama2-niah (SentencePiece; it retrieves, so scores > 0) on a King James excerpt, and
# gpt2-ioi (byte-level BPE; scores ~0, checks the byte-level decoder and GPT-2 path) with a short buffer.
# $1 = mechscope-cli, $2 = shared dir (unused). 77 = skip.
set -u
CLI="$1"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
[ -x "$CLI" ] || { echo "no CLI at $CLI"; exit 77; }
$PY -c 'import torch' 2>/dev/null || { echo "no torch for $PY"; exit 77; }
[ -f "$ROOT/tests/data/trained/llama2-niah/model.safetensors" ] || { echo "no trained models"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1  # 2 threads on the shared 2-core machines oversubscribe: 10x slower
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; else echo "ok: $1"; fi; }

zcat "$ROOT/scripts/train/data/kjv_haystack.txt.gz" | head -c 40000 > "$tmp/kjv.txt"
head -1 "$ROOT/resources/haystack/needles.jsonl" > "$tmp/n1.jsonl"
sed -n 2p "$ROOT/resources/haystack/needles.jsonl" > "$tmp/n2.jsonl"

run_both() {  # name model needles haystack extra-args...
  local name=$1 model=$2 needles=$3 hay=$4; shift 4
  "$CLI" retrieval --model "$model" --needles "$needles" --haystack "$hay" --no-stop --no-success-filter "$@" \
    --json "$tmp/$name.json" > "$tmp/$name.m.log" 2>&1
  check "$name: mechscope-cli retrieval runs" "[ $? -eq 0 ]"
  $PY "$ROOT/scripts/device/niah_grid_hf.py" --backend ref --tokenizer cli --cli "$CLI" --model "$model" --needles "$needles" \
    --haystack "$hay" --no-stop --record-gaps "$@" --out "$tmp/$name.py.jsonl" > "$tmp/$name.py.log" 2>&1
  check "$name: niah_grid_hf.py --backend ref runs" "[ $? -eq 0 ]" || cat "$tmp/$name.py.log"
  $PY "$ROOT/scripts/device/niah_compare.py" "$tmp/$name.json.tests.jsonl" "$tmp/$name.py.jsonl" --tol 0 \
    --json "$tmp/$name.cmp.json" > "$tmp/$name.cmp.log" 2>&1
  check "$name: prompts, generated ids and every head's score identical" "[ $? -eq 0 ]"
  sed 's/^/  /' "$tmp/$name.cmp.log"
}

# llama2-niah: 2 lengths x 2 depths (125 and 225 prompt tokens), 50 greedy steps each.
run_both niah "$ROOT/tests/data/trained/llama2-niah" "$tmp/n1.jsonl" "$tmp/kjv.txt" --lengths 300:400 --n-lengths 2 --depths 2
check "niah: retrieval heads score > 0 on both sides" \
  "$PY -c \"import json;c=json.load(open('$tmp/niah.cmp.json'));assert c['compared']==4 and c['heads_scoring_reference']>0 and c['top_heads_reference'][0][2]>0.1,c\""
# gpt2-ioi (256 positions): --buffer 20, 12 new tokens, the Devil's Dictionary.
run_both gpt2 "$ROOT/tests/data/trained/gpt2-ioi" "$tmp/n2.jsonl" "$ROOT/resources/haystack/devils_dictionary.txt" \
  --lengths 80:200 --n-lengths 2 --depths 2 --buffer 20 --max-new-tokens 12

# The JSONL carries mechscope's keys, and resuming skips finished tests.
check "record keys as mechscope's tests.jsonl" "$PY -c \"
import json
m=[json.loads(l) for l in open('$tmp/niah.json.tests.jsonl')][1]
p=[json.loads(l) for l in open('$tmp/niah.py.jsonl')][1]
miss=set(m)-set(p); assert not miss, miss
assert {'seconds','prompt_hash','logit_gap','argmax_gap'} <= set(p)
\""
$PY "$ROOT/scripts/device/niah_grid_hf.py" --backend ref --tokenizer cli --cli "$CLI" --model "$ROOT/tests/data/trained/llama2-niah" \
  --needles "$tmp/n1.jsonl" --haystack "$tmp/kjv.txt" --no-stop --record-gaps --lengths 300:400 --n-lengths 2 --depths 2 \
  --resume --out "$tmp/niah.py.jsonl" > "$tmp/resume.log" 2>&1
check "--resume skips the finished tests" "grep -q '4 resumed' '$tmp/resume.log' && [ \$(wc -l < '$tmp/niah.py.jsonl') -eq 5 ]"

exit $fail
