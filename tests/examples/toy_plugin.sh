#!/usr/bin/env bash
# Issue #21's acceptance check: the toy analysis (tests/examples/toy_analysis: its folder + one
# registration line) shows up in `list`, `list --json`, `--help` with its option's help, default and
# range, runs with its numbers scaling as its parameter says, refuses a bad value with exit 2, and runs
# from a batch plan — in mechscope-cli-toy, the same CLI objects plus the toy. The product's CLI knows
# nothing of it. $1 = mechscope-cli-toy, $2 = mechscope-cli, $3 = shared dir. Exit 77 = skip.
set -u
TOY="$1"
CLI="$2"
[ -x "$TOY" ] || { echo "no toy CLI at $TOY"; exit 77; }
# shellcheck source=tests/support/cli_test_lib.sh
source "$(dirname "$0")/../support/cli_test_lib.sh"

"$TOY" list > "$tmp/list.txt"
check "list shows the toy" "grep -q '^ *toy-head-norm' '$tmp/list.txt' || grep -q 'toy-head-norm' '$tmp/list.txt'"
"$TOY" list --json > "$tmp/list.json"
check "list --json has its parameter table" "$PY -c \"import json;a=[x for x in json.load(open('$tmp/list.json')) if x['name']=='toy-head-norm'][0];p=a['params'][0];assert p['key']=='scale' and p['flag']=='--scale' and p['default']=='1' and a['plugin'], a\""
"$CLI" list > "$tmp/list_real.txt"
check "the product's CLI does not list it" "! grep -q 'toy-head-norm' '$tmp/list_real.txt'"
"$TOY" toy-head-norm --help > "$tmp/help.txt"
check "--help shows --scale with its doc and default" "grep -q -- '--scale' '$tmp/help.txt' && grep -q 'multiply every norm by this factor (default 1)' '$tmp/help.txt'"
check "--help shows the token-row inputs" "grep -q -- '--token-ids' '$tmp/help.txt' && grep -q -- '--prompt' '$tmp/help.txt'"

"$TOY" plant --out "$tmp/m" >/dev/null 2>&1 || { echo "plant failed"; exit 77; }
echo '[[1, 5, 9, 12, 7, 3, 20, 22]]' > "$tmp/ids.json"
"$TOY" toy-head-norm --model "$tmp/m" --token-ids "$tmp/ids.json" --json "$tmp/a.json" > "$tmp/a.txt" 2>&1
check "run exit 0" "[ $? -eq 0 ]"
check "headline printed" "grep -q 'toy-head-norm: prompts=1' '$tmp/a.txt'"
"$TOY" toy-head-norm --model "$tmp/m" --token-ids "$tmp/ids.json" --scale 2.5 --json "$tmp/b.json" > /dev/null 2>&1
check "scale 2.5 is 2.5x the default, [24][4] grid, provenance" "$PY -c \"
import json
a=json.load(open('$tmp/a.json'));b=json.load(open('$tmp/b.json'))
g,h=a['head_norm'],b['head_norm']
assert len(g)==24 and all(len(r)==4 for r in g)
assert any(v>0 for r in g for v in r)
assert all(abs(2.5*x-y)<=1e-12*max(1,abs(y)) for r,s in zip(g,h) for x,y in zip(r,s))
assert 'toy-head-norm' in b['provenance']['command_line'] and '--scale 2.5' in b['provenance']['command_line']
\""
rc=0; "$TOY" toy-head-norm --model "$tmp/m" --token-ids "$tmp/ids.json" --scale -1 --json "$tmp/c.json" > "$tmp/c.txt" 2>&1 || rc=$?
check "scale -1 is refused with exit 2 (range from the table)" "[ $rc -eq 2 ] && [ ! -e '$tmp/c.json' ]"

if "$TOY" batch --help > /dev/null 2>&1; then
  cat > "$tmp/plan.toml" <<TOML
[models.m]
path = "$tmp/m"
[inputs.ids]
kind = "token-ids"
file = "$tmp/ids.json"
[[analysis]]
type = "toy-head-norm"
inputs = ["ids"]
scale = 2.5
TOML
  rc=0; "$TOY" batch "$tmp/plan.toml" --out "$tmp/batch" > "$tmp/batch.txt" 2>&1 || rc=$?
  check "batch plan with the toy runs" "[ $rc -eq 0 ]"
  check "batch result equals the direct run, headline from the table" "$PY -c \"
import json,glob
r=json.load(open(glob.glob('$tmp/batch/**/result.json',recursive=True)[0]))
b=json.load(open('$tmp/b.json'))
assert r['head_norm']==b['head_norm']
s=json.load(open('$tmp/batch/summary.json'))
assert 'top_head_norm' in json.dumps(s), s
\""
  rc=0; "$CLI" batch "$tmp/plan.toml" --out "$tmp/batch2" > "$tmp/batch2.txt" 2>&1 || rc=$?
  check "the product's batch refuses the unknown type" "[ $rc -eq 2 ] && grep -q 'toy-head-norm' '$tmp/batch2.txt'"
fi
[ $fail -eq 0 ] && echo "toy plugin OK"
exit $fail
