#!/usr/bin/env bash
# `plant --family`: the help lists every family; a planted Llama folder goes through `sinks` as any
# checkpoint, which detects BOS as the primary sink (and no secondary one) and ranks the planted sink heads
# 0.1 and 1.1 first.
# $1 = mechscope-cli, $2 = shared dir. Exit 77 = skip.
set -u
CLI="$1"
# shellcheck source=tests/support/cli_test_lib.sh
source "$(dirname "$0")/../support/cli_test_lib.sh"

"$CLI" plant --help >"$tmp/help.txt" 2>&1
for f in gpt2 gpt_neox llama mistral qwen2 qwen3 phi3 olmo2 gemma2 gemma3_text mixtral qwen2_moe qwen3_moe gpt_oss; do
  grep -q "$f" "$tmp/help.txt" || { echo "FAIL: plant --help lacks $f"; fail=1; }
done
"$CLI" plant --family nonesuch --out "$tmp/x" >/dev/null 2>&1
check "unknown family refused with exit 2" "[ $? -eq 2 ]"

"$CLI" plant --family llama --out "$tmp/m" >/dev/null 2>&1
check "plant --family llama exit 0" "[ $? -eq 0 ] && [ -f '$tmp/m/planted.json' ] && [ -f '$tmp/m/tokenizer.json' ]"
WORDS=$($PY - "$tmp/m" <<'PY'
import json,sys
vocab=json.load(open(sys.argv[1]+"/tokenizer.json"))["model"]["vocab"]
words=[w for w in vocab if w.isalpha() and w.islower()][:30]
print(" ".join(words))
PY
)
"$CLI" sinks --model "$tmp/m" --prompt "$WORDS" --json "$tmp/s.json" >/dev/null 2>&1
check "sinks exit 0" "[ $? -eq 0 ]"
check "BOS is the primary sink; heads 0.1 and 1.1 rank first with ≥ 0.95 of their attention on it" "$PY - '$tmp/s.json' '$tmp/m/planted.json' <<'PY'
import json,sys
j=json.load(open(sys.argv[1])); p=json.load(open(sys.argv[2]))
s=j['sink_score']
ranked=sorted(((s[l][h],l,h) for l in range(len(s)) for h in range(len(s[l]))), reverse=True)
top=sorted([l,h] for _,l,h in ranked[:2])
assert top==sorted(p['expected']['sink_heads']), (top, ranked[:4])
assert all(v >= 0.95 for v,_,_ in ranked[:2]), ranked[:2]
assert j['primary_position']==0 and j['sink_candidates']==0, (j['primary_position'], j['sink_candidates'])
PY"
exit $fail
