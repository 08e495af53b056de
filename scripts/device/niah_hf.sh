#!/usr/bin/env bash
# Retrieval grid on the H200 (issue #24): mechscope's 20 lengths x 10 depths NIAH grid up to 32K against the
# official protocol run with Hugging Face (scripts/device/niah_grid_hf.py: greedy model.generate with
# output_attentions=True, eager attention, the official per-step score, out-of-memory caught per test), on
# the same prompts, then scripts/device/niah_compare.py (prompts, generated ids, per-head scores, seconds).
#   OUT=... STAGES="build synth mechscope prompts hf compare trained" scripts/device/niah_hf.sh
# Stages:
#   build      mechscope-cli through scripts/device/gpu_build.sh (build-gpu/)
#   synth      qwen3-0.6b bf16 random weights (seed 1, max_position_embeddings raised) + the Qwen3 tokenizer
#   mechscope  mechscope-cli retrieval, bf16, one needle (NIAH_NEEDLES=all: the three), --no-stop
#              --no-success-filter, resumable (rerun the stage to finish a grid cut by NIAH_TIMEOUT)
#   prompts    niah_grid_hf.py --backend prompts (the tokenizers library): same prompts as mechscope's records?
#   hf         niah_grid_hf.py --backend hf --mode generate, bf16, --on-oom skip-longer, stops starting tests
#              after HF_DEADLINE s (resumable likewise)
#   official   (not default) the official script's own loop (sdpa prefill of n-1 tokens, eager decode steps
#              with output_attentions): memory of one row per step, so it runs the whole grid
#   compare    niah_compare.py mechscope vs hf (and vs official when present), --tol $BF16_TOL, markdown lines
#   trained    a model that retrieves: tests/data/trained/llama2-niah (4 x 4 heads, 2,048 positions) on a
#              King James excerpt (its training text), 3 needles x 4 lengths (300..1800) x 5 depths, fp32 on
#              CUDA on both sides, HF with --record-gaps; scores must be equal up to ties (--tol 0)
# Work files live in $W (default out/niah-hf, git-ignored: kept between calls while the machine stays warm);
# every call writes $OUT/summary.txt and packs the logs and per-test records into $OUT/results.tgz.
# Calls that fit the 10-minute limit, back to back (the machine stays warm ~30 s): STAGES="build synth trained",
# STAGES="mechscope prompts", STAGES="hf compare". On a cold machine start again with "build synth": the
# mechscope grid resumes from out/niah-hf/mechscope.json.tests.jsonl if that file is carried back (results.tgz).
set -uo pipefail
STAGES=${STAGES:-"build synth mechscope prompts hf compare trained"}
# shellcheck source=scripts/device/stage_lib.sh
source "$(dirname "$0")/stage_lib.sh"   # ROOT, OUT, B (build-gpu), PREFIX, log (to $OUT/summary.txt), has, t0
B=${BUILD_DIR:-$B}; CLI=$B/bin/mechscope-cli
W=${W:-$ROOT/out/niah-hf}; R=$W/results; mkdir -p "$R"
if [ -z "${MECHSCOPE_SHARED:-}" ]; then
  for c in "$ROOT/.deps/shared" "$ROOT/../shared" "$ROOT/shared"; do
    [ -d "$c/fixtures/tokenizers" ] && MECHSCOPE_SHARED=$(cd "$c" && pwd) && break
  done
fi
export MECHSCOPE_SHARED=${MECHSCOPE_SHARED:-$ROOT/.deps/shared}
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
LENGTHS=${LENGTHS:-1000:32000}; NL=${NL:-20}; ND=${ND:-10}
BF16_TOL=${BF16_TOL:-0}   # per-head score tolerance of the bf16 comparison (stage compare); TIE_TOL: the trained stage's tie gap
# CPU smoke of the plumbing (no GPU, no transformers): DEVICE=cpu HFB=ref TOK_ARGS="--tokenizer cli --cli $CLI"
DEVICE=${DEVICE:-cuda}; HFB=${HFB:-hf}; TOK_ARGS=(${TOK_ARGS:---tokenizer hf})
log "== niah_hf.sh $(date -u +%FT%TZ) stages: $STAGES"

if has build; then
  TARGETS=mechscope-cli bash "$ROOT/scripts/device/gpu_build.sh" "$B" > "$R/build.log" 2>&1
  log "build rc=$? $((SECONDS-t0)) s"; grep -E "error" "$R/build.log" | head -20 | tee -a "$OUT/summary.txt"
fi
Q=$W/qwen3-0.6b
if has synth && [ ! -f "$Q/model.safetensors" ]; then
  "$CLI" synth --family qwen3 --preset qwen3-0.6b --dtype bf16 --seed 1 --out "$Q" > "$R/synth.log" 2>&1
  log "synth qwen3-0.6b rc=$?"
  $PY - "$Q/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); c["max_position_embeddings"] = max(c.get("max_position_embeddings", 0), 131072 + 16)
json.dump(c, open(p, "w"), indent=2)
PY
  # The Qwen3 tokenizer when it travelled (11 MB: over the device's 64 MiB tree limit together with .deps/debs);
  # else the trained llama2-niah's SentencePiece-BPE tokenizer from the repository (ids < 32000 fit the synth vocab).
  if [ -f "$MECHSCOPE_SHARED/fixtures/tokenizers/qwen3/tokenizer.json" ]; then
    cp "$MECHSCOPE_SHARED/fixtures/tokenizers/qwen3/"* "$Q/"; log "tokenizer: qwen3"
  else
    cp -L "$ROOT/tests/data/trained/llama2-niah/"tokenizer*.json "$Q/"; log "tokenizer: llama2-niah (no Qwen3 tokenizer under $MECHSCOPE_SHARED)"
  fi
fi
NEEDLES=$ROOT/resources/haystack/needles.jsonl
if [ "${NIAH_NEEDLES:-one}" = one ]; then head -1 "$NEEDLES" > "$W/needle1.jsonl"; NEEDLES=$W/needle1.jsonl; fi
HAY=$ROOT/resources/haystack/devils_dictionary.txt
GRID=(--needles "$NEEDLES" --haystack "$HAY" --lengths "$LENGTHS" --n-lengths "$NL" --depths "$ND" --no-stop)

if has mechscope; then
  s=$SECONDS
  timeout "${NIAH_TIMEOUT:-480}" "$CLI" retrieval --model "$Q" --device "$DEVICE" --dtype bf16 "${GRID[@]}" --no-success-filter \
    --json "$W/mechscope.json" > "$R/mechscope.log" 2>&1
  log "mechscope grid rc=$? wall $((SECONDS-s)) s | $(grep -h '^timing:' "$R/mechscope.log") | $(grep -c '^retrieval: test' "$R/mechscope.log") tests run"
  tail -2 "$R/mechscope.log" >> "$OUT/summary.txt"
fi
if has prompts; then
  s=$SECONDS
  $PY "$ROOT/scripts/device/niah_grid_hf.py" --backend prompts "${TOK_ARGS[@]}" --model "$Q" "${GRID[@]}" --out "$W/prompts.jsonl" \
    > "$R/prompts.log" 2>&1
  log "prompts rc=$? $((SECONDS-s)) s"
  $PY "$ROOT/scripts/device/niah_compare.py" "$W/mechscope.json.tests.jsonl" "$W/prompts.jsonl" --require-all > "$R/compare_prompts.txt" 2>&1
  log "prompts identical to mechscope's: rc=$? | $(grep -h '^prompts differ' "$R/compare_prompts.txt")"
fi
if has hf; then
  s=$SECONDS
  timeout "${HF_TIMEOUT:-560}" $PY "$ROOT/scripts/device/niah_grid_hf.py" --backend hf --mode generate --dtype bf16 --device "$DEVICE" \
    "${TOK_ARGS[@]}" --model "$Q" "${GRID[@]}" --on-oom skip-longer --deadline-s "${HF_DEADLINE:-420}" --resume --out "$W/hf.jsonl" \
    > "$R/hf.log" 2>&1
  log "hf generate grid rc=$? wall $((SECONDS-s)) s | $(tail -1 "$R/hf.log")"
  grep -h "OUT OF MEMORY" "$R/hf.log" | head -3 >> "$OUT/summary.txt"
fi
if has official; then
  s=$SECONDS
  timeout "${HF_TIMEOUT:-560}" $PY "$ROOT/scripts/device/niah_grid_hf.py" --backend hf --mode official --prefill-attn sdpa --dtype bf16 \
    --device "$DEVICE" "${TOK_ARGS[@]}" --model "$Q" "${GRID[@]}" --deadline-s "${HF_DEADLINE:-420}" --resume --out "$W/official.jsonl" \
    > "$R/official.log" 2>&1
  log "hf official loop rc=$? wall $((SECONDS-s)) s | $(tail -1 "$R/official.log")"
fi
if has compare; then
  for ref in hf official; do
    [ -f "$W/$ref.jsonl" ] || continue
    $PY "$ROOT/scripts/device/niah_compare.py" "$W/mechscope.json.tests.jsonl" "$W/$ref.jsonl" --tol "$BF16_TOL" \
      --mechscope-log "$R/mechscope.log" --markdown --label "qwen3-0.6b synth bf16, $ref" --json "$R/compare_$ref.json" \
      > "$R/compare_$ref.txt" 2>&1
    log "compare mechscope vs $ref rc=$?"; cat "$R/compare_$ref.txt" >> "$OUT/summary.txt"
  done
fi
if has trained; then
  T=$ROOT/tests/data/trained/llama2-niah
  zcat "$ROOT/scripts/train/data/kjv_haystack.txt.gz" | head -c 200000 > "$W/kjv.txt"
  TG=(--needles "$ROOT/resources/haystack/needles.jsonl" --haystack "$W/kjv.txt" --lengths "${TRAINED_LENGTHS:-300:1800}" --n-lengths 4
      --depths "${TRAINED_DEPTHS:-5}" --no-stop)
  s=$SECONDS
  timeout 300 "$CLI" retrieval --model "$T" --device "$DEVICE" --dtype fp32 "${TG[@]}" --no-success-filter --no-resume \
    --json "$W/trained_mechscope.json" > "$R/trained_mechscope.log" 2>&1
  log "trained llama2-niah mechscope fp32 rc=$? wall $((SECONDS-s)) s | $(tail -1 "$R/trained_mechscope.log")"
  s=$SECONDS
  timeout 300 $PY "$ROOT/scripts/device/niah_grid_hf.py" --backend "$HFB" --mode generate --dtype fp32 --device "$DEVICE" "${TOK_ARGS[@]}" \
    --model "$T" "${TG[@]}" --record-gaps --out "$W/trained_hf.jsonl" > "$R/trained_hf.log" 2>&1
  log "trained llama2-niah hf generate fp32 rc=$? wall $((SECONDS-s)) s | $(tail -1 "$R/trained_hf.log")"
  $PY "$ROOT/scripts/device/niah_compare.py" "$W/trained_mechscope.json.tests.jsonl" "$W/trained_hf.jsonl" --tol 0 --tie-tol "${TIE_TOL:-1e-6}" \
    --allow-ties --require-all --mechscope-log "$R/trained_mechscope.log" --markdown --label "llama2-niah fp32" --json "$R/compare_trained.json" \
    > "$R/compare_trained.txt" 2>&1
  log "compare trained (exact up to ties) rc=$?"; cat "$R/compare_trained.txt" >> "$OUT/summary.txt"
fi
log "session total $((SECONDS-t0)) s"
cp "$OUT/summary.txt" "$R/summary-$(date -u +%H%M%S).txt"
# Records and logs (not the model): the per-test files compress ~5x.
(cd "$W" && tar czf "$OUT/results.tgz" results $(ls ./*.jsonl ./*.json 2>/dev/null))
ls -la "$OUT"
