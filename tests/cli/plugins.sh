#!/usr/bin/env bash
# The built-in analysis plugins as processes: `attention-influence` (its subcommand derived from its table)
# equals the independent Python port (scripts/reference/attention_influence_ref.py) on the trained GPT-2;
# `attention-overview` finds the planted model's known sinks and previous-token head; bad values → exit 2
# before any output. $1 = mechscope-cli, $2 = shared dir. Exit 77 = skip.
set -u
CLI="$1"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/support/cli_test_lib.sh
source "$(dirname "$0")/../support/cli_test_lib.sh"

REF="$SRC/tests/data/trained/references/attention_influence_gpt2-ioi.json"
MODEL="$SRC/tests/data/trained/gpt2-ioi"
if [ -f "$MODEL/model.safetensors" ] && [ -f "$REF" ]; then
  HEADS=$($PY -c "import json;print(','.join(json.load(open('$REF'))['heads']))")
  $PY -c "import json;json.dump([r['ids'] for r in json.load(open('$REF'))['rows']],open('$tmp/ids.json','w'))"
  "$CLI" attention-influence --model "$MODEL" --token-ids "$tmp/ids.json" --heads "$HEADS" --json "$tmp/ai.json" > "$tmp/ai.txt" 2>&1
  check "attention-influence exit 0" "[ $? -eq 0 ]"
  check "headline from the table" "grep -q 'attention-influence: method=uniform, masked_heads=' '$tmp/ai.txt'"
  check "attention-influence equals the Python port (3e-4 per token loss)" "$PY -c \"
import json
g=json.load(open('$tmp/ai.json'));r=json.load(open('$REF'))
assert len(g['rows'])==len(r['rows'])
for a,b in zip(g['rows'],r['rows']):
  for k in ('token_loss_base','token_loss_masked'):
    assert len(a[k])==len(b[k]) and max(abs(x-y) for x,y in zip(a[k],b[k]))<=3e-4, k
\""
  rc=0; "$CLI" attention-influence --model "$MODEL" --token-ids "$tmp/ids.json" --json "$tmp/none.json" > "$tmp/none.txt" 2>&1 || rc=$?
  check "no heads: exit 2 with the analysis' message, no output" "[ $rc -eq 2 ] && grep -q 'give the heads to mask' '$tmp/none.txt' && [ ! -e '$tmp/none.json' ]"
  rc=0; "$CLI" attention-influence --model "$MODEL" --token-ids "$tmp/ids.json" --heads 9.9 --json "$tmp/out.json" > "$tmp/out.txt" 2>&1 || rc=$?
  check "a head outside the model: exit 2" "[ $rc -eq 2 ] && grep -q '9.9' '$tmp/out.txt'"
  # logit-lens through its derived subcommand equals the port (scripts/reference/logit_lens_ref.py; the
  # bound of LogitLensReference: 3e-4 per probability).
  LL="$SRC/tests/data/trained/references/logit_lens_gpt2-ioi.json"
  $PY -c "import json;json.dump([json.load(open('$LL'))['ids']],open('$tmp/ll_ids.json','w'))"
  "$CLI" logit-lens --model "$MODEL" --token-ids "$tmp/ll_ids.json" --positions all --targets 11,262 --json "$tmp/ll.json" > "$tmp/ll.txt" 2>&1
  check "logit-lens exit 0 with a headline" "grep -q 'logit-lens: final_top_id=' '$tmp/ll.txt'"
  check "logit-lens equals the Python port" "$PY -c \"
import json
g=json.load(open('$tmp/ll.json'));r=json.load(open('$LL'))
assert g['positions']==list(range(len(r['ids'])))
for a,b in zip(g['top_probs'],r['top_probs']):
  for x,y in zip(a,b): assert max(abs(u-v) for u,v in zip(x,y[:5]))<=3e-4
for a,b in zip(g['target_prob'],r['target_prob']):
  for x,y in zip(a,b): assert max(abs(u-v) for u,v in zip(x,y))<=3e-4
\""
  rc=0; "$CLI" logit-lens --model "$MODEL" --token-ids "$tmp/ll_ids.json" --targets 99999999 --json "$tmp/llbad.json" > "$tmp/llbad.txt" 2>&1 || rc=$?
  check "logit-lens: a target outside the vocabulary exits 2, no output" "[ $rc -eq 2 ] && grep -q 'outside the vocabulary' '$tmp/llbad.txt' && [ ! -e '$tmp/llbad.json' ]"
  # ov-qk through its derived subcommand equals the port (scripts/reference/ov_qk_ref.py; OvQkReference's
  # bounds: eigen <= 1.3e-8, over the vocabulary <= 1.2e-7, QK <= 1.1e-11; every top-k margin there is >= 40x its bound, so the fractions are equal).
  OQ="$SRC/tests/data/trained/references/ov_qk_gpt2-ioi.json"
  $PY -c "import json;json.dump([json.load(open('$OQ'))['tokens']],open('$tmp/oq_ids.json','w'))"
  QT=$($PY -c "import json;print(','.join(map(str,json.load(open('$OQ'))['query_tokens'])))")
  KT=$($PY -c "import json;print(','.join(map(str,json.load(open('$OQ'))['key_tokens'])))")
  "$CLI" ov-qk --model "$MODEL" --token-ids "$tmp/oq_ids.json" --query-tokens "$QT" --key-tokens "$KT" --json "$tmp/oq.json" > "$tmp/oq.txt" 2>&1
  check "ov-qk exit 0 with a headline" "grep -q 'ov-qk: n_tokens=32' '$tmp/oq.txt'"
  check "ov-qk equals the Python port" "$PY -c \"
import json
g=json.load(open('$tmp/oq.json'));r=json.load(open('$OQ'))
assert g['tokens']==r['tokens']
for l in range(4):
  for h in range(4):
    assert abs(g['ov_copy_eigen'][l][h]-r['ov_copy_eigen'][l][h])<=1e-8
    assert abs(g['ov_copy_eigen_vocab'][l][h]-r['ov_copy_eigen_vocab'][l][h])<=1e-6
    assert g['ov_copy_topk'][l][h]==r['ov_copy_topk'][l][h] and g['ov_copy_topk_negative'][l][h]==r['ov_copy_topk_negative'][l][h]
    for a,b in zip(g['qk'][l][h],r['qk'][l][h]): assert max(abs(u-v) for u,v in zip(a,b))<=1e-9
\""
  rc=0; "$CLI" ov-qk --model "$MODEL" --token-ids "$tmp/oq_ids.json" --key-tokens 50257 --json "$tmp/oqbad.json" > "$tmp/oqbad.txt" 2>&1 || rc=$?
  check "ov-qk: a key token outside the vocabulary exits 2 naming it, no output" "[ $rc -eq 2 ] && grep -q -- '--key-tokens token id 50257 is outside the vocabulary' '$tmp/oqbad.txt' && [ ! -e '$tmp/oqbad.json' ]"
else
  echo "skip: $MODEL or its reference is absent"
fi

"$CLI" plant --out "$tmp/m" >/dev/null 2>&1 || { echo "plant failed"; exit 77; }
PROMPT="When Mary and John were at the store , John gave a ring to"  # 15 tokens with BOS
"$CLI" tokenize --tokenizer "$tmp/m" --text "$PROMPT" --add-special-tokens --json > "$tmp/tok.json" 2>/dev/null
$PY -c "import json;json.dump([json.load(open('$tmp/tok.json'))['ids']],open('$tmp/p.json','w'))"
"$CLI" attention-overview --model "$tmp/m" --prompt "$PROMPT" --json "$tmp/ov.json" > "$tmp/ov.txt" 2>&1
check "attention-overview exit 0" "[ $? -eq 0 ]"
check "planted sinks carry ~all first-token mass; 0.0 looks one token back" "$PY -c \"
import json
j=json.load(open('$tmp/ov.json'))
f=j['first_token_mass'];d=j['mean_distance']
assert len(f)==24 and len(f[0])==4
for l,h in [(0,1),(1,3),(2,3),(4,0),(23,0)]: assert f[l][h]>0.95,(l,h,f[l][h])
assert abs(d[0][0]-1.0)<0.1, d[0][0]
assert j['per_query_first_token_mass'][0][0] is None
\""
rc=0; "$CLI" attention-overview --model "$tmp/m" --token-ids "$tmp/p.json" --skip-queries -1 --json "$tmp/bad.json" > "$tmp/bad.txt" 2>&1 || rc=$?
check "--skip-queries -1: exit 2 naming the option, no output" "[ $rc -eq 2 ] && grep -q -- '--skip-queries' '$tmp/bad.txt' && [ ! -e '$tmp/bad.json' ]"
rc=0; "$CLI" attention-overview --model "$tmp/m" --token-ids "$tmp/p.json" --skip-queries 15 --json "$tmp/bad2.json" > "$tmp/bad2.txt" 2>&1 || rc=$?
check "--skip-queries past the prompt: exit 2" "[ $rc -eq 2 ] && [ ! -e '$tmp/bad2.json' ]"
[ $fail -eq 0 ] && echo "plugins OK"
exit $fail
