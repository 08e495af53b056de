#!/usr/bin/env bash
# Writes every reference JSON (issues #18, #19) into OUT_DIR: {sinks,waad_fai,waad_fai_h4,constraint,retrieval,attention_influence}_<model>.json
# circuits_{ioi,co}_gpt2-ioi.json, circuits_co_gpt2-co.json and circuits_{ioi,co}_gpt2-both.json.
#   scripts/reference/run_all.sh OUT_DIR                      # transformers (the reference)
#   scripts/reference/run_all.sh OUT_DIR --no-transformers    # pure-PyTorch fallback (debugging)
# With transformers it also checks its forward against reference.safetensors and, in OUT_DIR/fallback,
# that the fallback gives the same numbers (so a CPU-only machine can debug with it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:?usage: run_all.sh OUT_DIR [--no-transformers]}"
shift
flag="${1:-}"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
mkdir -p "$out"
models=(llama2-niah mistral-sw gpt2-ioi)
dirs=(); for m in "${models[@]}"; do dirs+=("$root/tests/data/trained/$m"); done
"$PY" "$here/check_fallback.py" $flag "${dirs[@]}"
run_set() {  # $1 = output folder, $2 = backend flag
  local o="$1" f="$2"
  mkdir -p "$o"
  for m in "${models[@]}"; do
    d="$root/tests/data/trained/$m"
    "$PY" "$here/sinks_ref.py" $f --model "$d" --out "$o/sinks_$m.json"
    "$PY" "$here/waad_fai_ref.py" $f --model "$d" --receiver-heads 4 --out "$o/waad_fai_$m.json"
    "$PY" "$here/waad_fai_ref.py" $f --model "$d" --receiver-heads 4 --fai-horizon 4: --out "$o/waad_fai_h4_$m.json"
    "$PY" "$here/constraint_ref.py" $f --model "$d" --out "$o/constraint_$m.json"
    if [ "$m" != gpt2-ioi ]; then "$PY" "$here/retrieval_ref.py" $f --model "$d" --out "$o/retrieval_$m.json"
    else "$PY" "$here/retrieval_ref.py" $f --model "$d" --max-new-tokens 1 --stop-token 198 --out "$o/retrieval_$m.json"; fi
  done
}
# AttentionInfluence masks heads inside the pure-PyTorch forward (whose match with transformers is what
# check_fallback.py checks above), so it is written once, into OUT_DIR, whatever the backend flag.
attention_influence() {
  local heads=(llama2-niah:3.1,2.0,1.3 mistral-sw:1.2,0.1 gpt2-ioi:3.0,2.1)
  for mh in "${heads[@]}"; do
    m="${mh%%:*}"
    "$PY" "$here/attention_influence_ref.py" --no-transformers --model "$root/tests/data/trained/$m" \
      --heads "${mh#*:}" --out "$out/attention_influence_$m.json"
  done
}
# IOI / Colored Objects causal protocols (issue #19) on hooked_gpt2.py (its own check against
# reference.safetensors runs first), written once into OUT_DIR whatever the backend flag.
circuits() {
  local refs="$root/tests/data/trained/references"
  "$PY" "$here/circuits_ref.py" --model "$root/tests/data/trained/gpt2-ioi" \
    --ioi-dataset "$refs/ioi_dataset.jsonl" --co-dataset "$refs/co_dataset.jsonl" --out-dir "$out"
  # gpt2-co (trained on Colored Objects only): its receivers; only circuits_co_gpt2-co.json is kept
  "$PY" "$here/circuits_ref.py" --model "$root/tests/data/trained/gpt2-co" \
    --ioi-dataset "$refs/ioi_dataset.jsonl" --co-dataset "$refs/co_dataset.jsonl" --out-dir "$out" \
    --co-pp "logits@END;q:2.3,2.2@END;q:1.2,1.0@END;v:1.2,1.0@OBJ2" --co-intervention-heads 2.3,2.2
  rm -f "$out/circuits_ioi_gpt2-co.json"
  # gpt2-both (trained on both tasks): its receivers; both JSONs kept (their overlap is the point)
  "$PY" "$here/circuits_ref.py" --model "$root/tests/data/trained/gpt2-both" \
    --ioi-dataset "$refs/ioi_dataset.jsonl" --co-dataset "$refs/co_dataset.jsonl" --out-dir "$out" \
    --ioi-pp "logits@END;q:3.3,2.3@END;q:2.3@END;v:2.3@S2" \
    --co-pp "logits@END;q:2.2,2.3@END;q:2.2@END;q:2.3@END;q:2.0@END" --co-intervention-heads 2.2,2.3
}
# OV / QK circuits read the weights only (no forward): written once into OUT_DIR whatever the backend flag.
ov_qk() {
  for m in gpt2-ioi llama2-niah; do
    "$PY" "$here/ov_qk_ref.py" --model "$root/tests/data/trained/$m" --out "$out/ov_qk_$m.json"
  done
}
run_set "$out" "$flag"
attention_influence
circuits
ov_qk
if [ "$flag" != --no-transformers ]; then
  "$PY" "$here/check_fallback.py" --no-transformers "${dirs[@]}"
  run_set "$out/fallback" --no-transformers
  pairs=(); for f in "$out"/*.json; do
    [[ "$(basename "$f")" == attention_influence_* || "$(basename "$f")" == circuits_* || "$(basename "$f")" == ov_qk_* ]] && continue
    pairs+=("$f" "$out/fallback/$(basename "$f")")
  done
  "$PY" "$here/compare_json.py" "${pairs[@]}"
fi
echo "run_all: done ($(ls "$out"/*.json | wc -l) files in $out)"
