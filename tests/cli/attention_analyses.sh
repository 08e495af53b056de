#!/usr/bin/env bash
# The attention-analysis commands as processes on the planted model: JSON keys of docs/cli.md, a few
# planted values, --out HDF5 (or its clear refusal), bad input → exit 2, resumable retrieval.
# $1 = mechscope-cli, $2 = shared dir. Exit 77 = skip.
set -u
CLI="$1"
# shellcheck source=tests/support/cli_test_lib.sh
source "$(dirname "$0")/../support/cli_test_lib.sh"

"$CLI" plant --out "$tmp/m" >/dev/null 2>&1 || { echo "plant failed"; exit 77; }
# A prompt of distinct plain words with ';' (the planted delimiter) as the 6th token.
WORDS=$($PY - "$tmp/m" <<'PY'
import json,sys
vocab=json.load(open(sys.argv[1]+"/tokenizer.json"))["model"]["vocab"]
words=[w for w in vocab if w.isalpha() and w.islower()][:40]
print(" ".join(words[:5]+[";"]+words[5:30]))
PY
)

# ---- sinks ----
"$CLI" sinks --model "$tmp/m" --prompt "$WORDS" --json "$tmp/s.json" 2>"$tmp/s.err"
rc=$?
check "sinks exit 0" "[ $rc -eq 0 ]"
check "sinks keys" "$PY -c \"import json;j=json.load(open('$tmp/s.json'));assert all(k in j for k in ['sink_score','sink_rate','secondary_sinks']);assert len(j['sink_score'])==24 and len(j['sink_score'][0])==4;assert len(j['sink_rate'])==24\""
check "planted secondary sink ';' at layer 8, lifetime 6" "$PY -c \"import json;j=json.load(open('$tmp/s.json'));s=[x for x in j['secondary_sinks'] if x['label']=='secondary'];assert len(s)==1 and s[0]['position']==6 and s[0]['creation_layer']==8 and s[0]['lifetime']==6,s;assert abs(s[0]['mlp_norm']-84.85)<0.01\""
check "sinks progress on stderr" "grep -q 'sinks:' '$tmp/s.err'"

# ---- waad-fai ----
"$CLI" waad-fai --model "$tmp/m" --prompt "$WORDS" --json "$tmp/w.json" --fai-horizon 1:5 2>/dev/null
check "waad-fai keys" "$PY -c \"import json;j=json.load(open('$tmp/w.json'));assert all(k in j for k in ['head_distance','local_heads','global_heads','waad','fai','preplan_tokens','anchor_tokens']);n=len(j['waad'][0]);assert len(j['fai'][0])==n and n>20;assert len(j['local_heads'])==round(0.3*96)\""

# ---- constraint-attention ----
"$CLI" constraint-attention --model "$tmp/m" --prompt "$WORDS" --constraint-tokens 2:4 --json "$tmp/c.json" 2>/dev/null
"$CLI" constraint-attention --model "$tmp/m" --prompt "$WORDS" --constraint-tokens 2:4 --response "$WORDS" --json "$tmp/c2.json" 2>/dev/null
check "constraint beta over the response" "$PY -c \"import json;j=json.load(open('$tmp/c2.json'));n=len(j['alpha'][0]);r=len(j['response_ids']);assert len(j['beta'])==24 and len(j['answer_rows'])==r and j['answer_rows'][0]==n-r-1;b=[sum(j['alpha'][l][i] for i in j['answer_rows'])/r for l in range(24)];assert max(abs(x-y) for x,y in zip(b,j['beta']))<1e-9\""
"$CLI" constraint-attention --model "$tmp/m" --prompt "$WORDS" --constraint-tokens 2:4 --response "$WORDS" --compare-json "$tmp/c2.json" --json "$tmp/c3.json" 2>/dev/null
check "constraint delta_beta against itself is 0" "$PY -c \"import json;j=json.load(open('$tmp/c3.json'));assert len(j['delta_beta'])==24 and max(abs(x) for x in j['delta_beta'])<1e-12\""
check "constraint keys" "$PY -c \"import json;j=json.load(open('$tmp/c.json'));assert j['constraint_positions']==[2,3];assert len(j['alpha'])==24;assert len(j['alpha_mean'])==len(j['alpha'][0])\""

# ---- retrieval single-test mode on a planted needle ----
$PY - "$tmp" <<'PY'
import json,sys
vocab=json.load(open(sys.argv[1]+"/m/tokenizer.json"))["model"]["vocab"]
needle=["magic","number","seven","hundred","twelve"]
skip=set(needle)|{";"}
filler=[w for w in vocab if w.isalpha() and w.islower() and w not in skip][:20]
words=filler[:10]+needle+filler[10:20]+["magic"]
ids=[0]+[vocab[w] for w in words]
json.dump([ids],open(sys.argv[1]+"/needle.json","w"))
PY
"$CLI" retrieval --model "$tmp/m" --token-ids "$tmp/needle.json" --needle-span 11:16 --max-new-tokens 4 --no-success-filter \
  --json "$tmp/r.json" >/dev/null 2>&1
check "retrieval single-test keys and planted heads" "$PY -c \"import json;j=json.load(open('$tmp/r.json'));s=j['retrieval_score'];assert len(j['tests'])==1 and len(j['tests'][0]['generated_ids'])==4;assert len(j['activation_frequency'])==24;top={(l,h) for l in range(24) for h in range(4) if s[l][h]>0.1};assert top=={(1,0),(2,0)},top\""
"$CLI" retrieval --model "$tmp/m" --token-ids "$tmp/needle.json" --needle-span 11:16 --max-new-tokens 4 --no-success-filter \
  --mask-heads 1.0,2.0 --json "$tmp/rm.json" >/dev/null 2>&1
check "masked retrieval heads score 0" "$PY -c \"import json;j=json.load(open('$tmp/rm.json'));s=j['retrieval_score'];assert s[1][0]==0 and s[2][0]==0;assert j['masked_heads']==[[1,0],[2,0]]\""

# ---- retrieval protocol: resumable ----
printf '%s\n' '{"needle": " magic number seven hundred twelve", "question": "what is the number ?", "real_needle": "number seven hundred twelve"}' > "$tmp/needles.jsonl"
$PY - "$tmp" <<'PY'
import json,sys
vocab=json.load(open(sys.argv[1]+"/m/tokenizer.json"))["model"]["vocab"]
skip={"magic","number","seven","hundred","twelve",";"}
filler=[w for w in vocab if w.isalpha() and w.islower() and w not in skip][:30]
open(sys.argv[1]+"/hay.txt","w").write(" ".join(filler))
PY
"$CLI" retrieval --model "$tmp/m" --needles "$tmp/needles.jsonl" --haystack "$tmp/hay.txt" --lengths 60:80 --n-lengths 2 --depths 2 \
  --buffer 10 --max-new-tokens 4 --no-stop --no-success-filter --json "$tmp/p.json" >/dev/null 2>"$tmp/p.err"
check "protocol ran 4 tests with progress (+ the settings line)" "[ \$(grep -c 'retrieval: test' '$tmp/p.err') -eq 4 ] && [ \$(wc -l < '$tmp/p.json.tests.jsonl') -eq 5 ]"
"$CLI" retrieval --model "$tmp/m" --needles "$tmp/needles.jsonl" --haystack "$tmp/hay.txt" --lengths 60:80 --n-lengths 2 --depths 2 \
  --buffer 10 --max-new-tokens 4 --no-stop --no-success-filter --json "$tmp/p.json" >/dev/null 2>"$tmp/p2.err"
check "rerun resumes (no test recomputed)" "! grep -q 'retrieval: test' '$tmp/p2.err' && grep -q 'resuming, 4 tests' '$tmp/p2.err'"
check "resumed JSON has the 4 tests" "$PY -c \"import json;j=json.load(open('$tmp/p.json'));assert len(j['tests'])==4\""

# ---- HDF5 output or its refusal ----
if "$CLI" --build-info 2>/dev/null | grep -qi 'hdf5.*yes\|hdf5 1\.'; then
  "$CLI" sinks --model "$tmp/m" --prompt "$WORDS" --out "$tmp/s.h5" >/dev/null 2>&1
  check "sinks --out writes h5" "[ -f '$tmp/s.h5' ] && [ ! -f '$tmp/s.h5.partial' ]"
  if /usr/bin/python3 -c 'import h5py' 2>/dev/null; then
    check "h5 has /analyses/sinks/sink_score" "/usr/bin/python3 -c \"import h5py;f=h5py.File('$tmp/s.h5');assert f['analyses/sinks/sink_score'].shape==(24,4)\""
  fi
fi

# ---- bad input ----
"$CLI" sinks --model "$tmp/m" --prompt "$WORDS" --json "$tmp/x.json" --bos-position 999 >/dev/null 2>&1
check "bad --bos-position exits 2" '[ $? -eq 2 ]'
"$CLI" waad-fai --model "$tmp/m" --prompt "$WORDS" --json "$tmp/x.json" --fai-horizon nonsense >/dev/null 2>&1
check "bad --fai-horizon exits 2" '[ $? -eq 2 ]'
"$CLI" sinks --model "$tmp/m" --json "$tmp/x.json" >/dev/null 2>&1
check "no input exits 2" '[ $? -eq 2 ]'
exit $fail
