#!/usr/bin/env bash
# retrieval's grid mode as a process on the planted model (issue #18): bad input is one line, exit 2
# and no output or resume file; a resume file from other settings is refused by name; --mask-top
# runs the random-heads control next to the top-K mask. $1 = mechscope-cli, $2 = shared dir. 77 = skip.
set -u
CLI="$1"
SHARED="${2:-}"
# shellcheck source=tests/support/cli_test_lib.sh
source "$(dirname "$0")/../support/cli_test_lib.sh"

"$CLI" plant --out "$tmp/m" >/dev/null 2>&1 || { echo "plant failed"; exit 77; }
printf '%s\n' '{"needle": "magic number seven hundred twelve", "question": "what is the number ?", "real_needle": "number seven hundred twelve"}' > "$tmp/needles.jsonl"
$PY - "$tmp" <<'PY'
import json,sys
vocab=json.load(open(sys.argv[1]+"/m/tokenizer.json"))["model"]["vocab"]
skip={"magic","number","seven","hundred","twelve",";"}
filler=[w for w in vocab if w.isalpha() and w.islower() and w not in skip][:40]
open(sys.argv[1]+"/hay.txt","w").write(" ".join(filler))
PY
GRID=(--needles "$tmp/needles.jsonl" --haystack "$tmp/hay.txt" --n-lengths 2 --depths 2 --buffer 8 --no-success-filter)
OK=(--lengths 40:60 --max-new-tokens 4)

# ---- a needle longer than the context ----
"$CLI" retrieval --model "$tmp/m" "${GRID[@]}" --lengths 10:60 --max-new-tokens 4 --json "$tmp/long.json" >/dev/null 2>"$tmp/long.err"
rc=$?
check "needle longer than the context exits 2" "[ $rc -eq 2 ]"
check "... with one line naming it" "[ \$(grep -c 'longer than context length 10' '$tmp/long.err') -eq 1 ]"
check "... and no output or resume file" "[ ! -e '$tmp/long.json' ] && [ ! -e '$tmp/long.json.tests.jsonl' ]"

# ---- a byte-level tokenizer without its decoder ----
if [ -n "$SHARED" ] && [ -f "$SHARED/fixtures/tokenizers/gpt2/tokenizer.json" ]; then
  cp -r "$tmp/m" "$tmp/nodec"
  $PY - "$SHARED/fixtures/tokenizers/gpt2/tokenizer.json" "$tmp/nodec/tokenizer.json" <<'PY'
import json,sys
j=json.load(open(sys.argv[1])); j["decoder"]=None; json.dump(j,open(sys.argv[2],"w"))
PY
  rm -f "$tmp/nodec/tokenizer_config.json"
  "$CLI" retrieval --model "$tmp/nodec" "${GRID[@]}" "${OK[@]}" --json "$tmp/nd.json" >/dev/null 2>"$tmp/nd.err"
  rc=$?
  check "tokenizer without a decoder exits 2" "[ $rc -eq 2 ]"
  check "... with one line naming it" "[ \$(grep -c 'no decoder' '$tmp/nd.err') -eq 1 ]"
  check "... and no output or resume file" "[ ! -e '$tmp/nd.json' ] && [ ! -e '$tmp/nd.json.tests.jsonl' ]"
else
  echo "skip: gpt2 fixture tokenizer absent (no-decoder check)"
fi

# ---- detection, then a resume with other settings ----
"$CLI" retrieval --model "$tmp/m" "${GRID[@]}" "${OK[@]}" --json "$tmp/d.json" >/dev/null 2>"$tmp/d.err"
check "detection runs" "[ $? -eq 0 ] && [ -f '$tmp/d.json' ]"
# Depth 100 appends the needle and the question follows with no space (the official code):
# "twelveBased" is one unknown word here, so the answer span is not found and those tests score 0.
check "detection JSON keys, spans found and not found" "$PY -c \"import json;j=json.load(open('$tmp/d.json'));t=j['tests'];assert len(t)==4;assert all('span_found' in x and 'inserted_at' in x and 'stop_reason' in x for x in t);assert j['haystack']['repeated'] is True and len(j['warnings'])==1;assert j['stop']['newline'] is True;assert j['resume_key'].startswith('fnv1a64:');assert [x['span_found'] for x in t]==[True,False,True,False] and t[1]['needle_span'] is None and t[0]['needle_span']==[2,6];assert j['tests_without_span']==2\""
check "settings line first in the resume file" "head -1 '$tmp/d.json.tests.jsonl' | grep -q retrieval_settings"
"$CLI" retrieval --model "$tmp/m" "${GRID[@]}" --lengths 40:60 --max-new-tokens 3 --json "$tmp/d.json" >/dev/null 2>"$tmp/d2.err"
rc=$?
check "resume with another --max-new-tokens exits 2 naming it" "[ $rc -eq 2 ] && grep -q 'max_new_tokens' '$tmp/d2.err'"
"$CLI" retrieval --model "$tmp/m" "${GRID[@]}" --lengths 40:60 --max-new-tokens 3 --no-resume --json "$tmp/d.json" >/dev/null 2>&1
check "--no-resume starts over" "[ $? -eq 0 ] && [ \$(wc -l < '$tmp/d.json.tests.jsonl') -eq 5 ]"

# ---- masking: top K next to K random non-retrieval heads ----
"$CLI" retrieval --model "$tmp/m" "${GRID[@]}" "${OK[@]}" --json "$tmp/base.json" >/dev/null 2>&1
"$CLI" retrieval --model "$tmp/m" "${GRID[@]}" "${OK[@]}" --mask-top 2 --scores "$tmp/base.json" --seed 3 --json "$tmp/mk.json" >/dev/null 2>"$tmp/mk.err"
check "mask-top runs both conditions" "[ $? -eq 0 ] && [ \$(grep -c 'retrieval: control test' '$tmp/mk.err') -eq 4 ]"
check "mask_experiment: same K, control avoids retrieval heads" "$PY -c \"
import json
j=json.load(open('$tmp/mk.json'));b=json.load(open('$tmp/base.json'))
m=j['mask_experiment'];top=[tuple(h) for h in m['top_k']['heads']];rnd=[tuple(h) for h in m['random_k']['heads']]
assert m['k']==2 and len(top)==2 and len(rnd)==2,m
s=b['retrieval_score']
assert not set(top)&set(rnd)
assert all(s[l][h]<=0.1 for l,h in rnd),rnd
assert len(m['random_k']['test_records'])==4 and m['top_k']['tests']==4
\""

exit $fail
