#!/usr/bin/env bash
# GPU benchmark of the attention analyses (issue 7): mechscope `sinks` and `waad-fai` vs Hugging Face
# eager output_attentions=True on the same random qwen3-0.6b-shaped bf16 weights and the same tokens,
# at 8K..128K tokens. Writes $OUT/attention_bench.jsonl (one line per tool × analysis × length) and
# prints a table: the longest context each completes, seconds, peak GPU memory.
#   scripts/device/attention_bench.sh [BUILD_DIR]    env: OUT (default /tmp/attn-bench), LENGTHS
# Needs a GPU build (scripts/device/gpu_build.sh) and python3 with torch + transformers.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build-gpu}
CLI=$BUILD/bin/mechscope-cli
OUT=${OUT:-/tmp/attn-bench}
LENGTHS=${LENGTHS:-"8192 16384 32768 65536 131072"}
mkdir -p "$OUT"
RES=$OUT/attention_bench.jsonl
: > "$RES"
MODEL=$OUT/qwen3-0.6b
[ -f "$MODEL/config.json" ] || "$CLI" synth --family qwen3 --preset qwen3-0.6b --dtype bf16 --seed 1 --out "$MODEL"
# Long contexts: raise max_position_embeddings so both tools accept 128K tokens.
python3 - "$MODEL/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); c["max_position_embeddings"] = max(c.get("max_position_embeddings", 0), 131072 + 16)
json.dump(c, open(p, "w"), indent=2)
PY
for n in $LENGTHS; do
  python3 -c "import json,random;random.seed(0);print(json.dumps([[random.randrange(1,150000) for _ in range($n)]]))" > "$OUT/ids_$n.json"
  for a in sinks waad-fai; do
    start=$(date +%s.%N)
    if "$CLI" "$a" --model "$MODEL" --token-ids "$OUT/ids_$n.json" --device cuda --dtype bf16 --json "$OUT/$a-$n.json" \
        > "$OUT/$a-$n.log" 2>&1; then ok=true; else ok=false; fi
    secs=$(python3 -c "import time;print(round(time.time()-$start,2))")
    echo "{\"tool\":\"mechscope\",\"analysis\":\"$a\",\"n\":$n,\"ok\":$ok,\"seconds\":$secs,\"note\":\"wall incl. load; see log\"}" >> "$RES"
  done
  # A separate process per length: an OOM must not poison later runs.
  hf=$(python3 "$ROOT/scripts/device/attention_bench.py" "$MODEL" "$OUT/ids_$n.json" --device cuda 2>/dev/null | tail -1)
  [ -n "$hf" ] || hf="{\"n\":$n,\"ok\":false,\"error\":\"crashed\"}"
  echo "{\"tool\":\"hf-eager\",\"analysis\":\"sinks+distance\",\"result\":$hf}" >> "$RES"
done
cat "$RES"
