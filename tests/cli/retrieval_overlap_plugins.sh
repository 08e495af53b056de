#!/usr/bin/env bash
# retrieval and overlap as analysis plugins (issue #21): the derived subcommands give the numbers, keys and
# terminal summaries the hand-written commands gave (tests/data/planted/retrieval_overlap/reference.json,
# recorded from them on the planted model): a single needle test with and without masked heads, a resumable
# grid, the --mask-top experiment with its random-heads control, and the overlap of two circuit files,
# which runs without a model (no --model option, no model loaded). $1 = mechscope-cli. 77 = skip.
set -u
CLI="$1"
DATA=$(cd "$(dirname "$0")/../data/planted/retrieval_overlap" && pwd)
# shellcheck source=tests/support/cli_test_lib.sh
source "$(dirname "$0")/../support/cli_test_lib.sh"
cp "$DATA"/needle.json "$DATA"/needles.jsonl "$DATA"/hay.txt "$DATA"/circuit_ioi.json "$DATA"/circuit_co.json "$tmp"/
cd "$tmp"
"$CLI" plant --out m >/dev/null 2>&1 || { echo "plant failed"; exit 77; }

run() { local name=$1; shift; "$CLI" "$@" > "$name.out" 2> "$name.err"; echo $? > "$name.rc"; }
run single retrieval --model m --token-ids needle.json --needle-span 11:16 --max-new-tokens 4 --no-success-filter --json single.json
run single_mask retrieval --model m --token-ids needle.json --needle-span 11:16 --max-new-tokens 4 --no-success-filter --mask-heads 1.0,2.0 --json single_mask.json
GRID=(--needles needles.jsonl --haystack hay.txt --n-lengths 2 --depths 2 --buffer 8 --no-success-filter --lengths 40:60 --max-new-tokens 4)
run grid retrieval --model m "${GRID[@]}" --json grid.json
run grid_resumed retrieval --model m "${GRID[@]}" --json grid.json
run grid_mask retrieval --model m "${GRID[@]}" --mask-top 2 --scores grid.json --seed 3 --json grid_mask.json --no-resume
run overlap overlap circuit_ioi.json circuit_co.json --json overlap.json
run overlap_bad overlap needles.jsonl circuit_co.json

check "every run exits 0" "[ \"\$(cat single.rc single_mask.rc grid.rc grid_resumed.rc grid_mask.rc overlap.rc | tr -d '\n')\" = 000000 ]"
check "the grid resumes from its sidecar" "grep -q 'resuming, 4 tests already in grid.json.tests.jsonl' grid_resumed.err && ! grep -q 'retrieval: test' grid_resumed.err"
check "the control runs next to the top-K mask" "[ \$(grep -c 'retrieval: control test' grid_mask.err) -eq 4 ]"
check "overlap loads no model (no timing line, no --model option)" "! grep -q 'timing:' overlap.err && ! \"$CLI\" overlap --help | grep -q -- '--model'"
check "a malformed circuit file exits 2 naming it" "[ \$(cat overlap_bad.rc) -eq 2 ] && grep -q 'mechscope-cli: error: needles.jsonl: ' overlap_bad.err"
check "same JSON and terminal summary as the hand-written commands" "$PY - '$DATA/reference.json' <<'PY'
import json, sys
ref = json.load(open(sys.argv[1]))
def same(a, b, where):
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 1e-9 * max(1.0, abs(a)), (where, a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) <= set(b), (where, set(a) ^ set(b))
        for k in a: same(a[k], b[k], where + '.' + k)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (where, len(a), len(b) if isinstance(b, list) else b)
        for i, (x, y) in enumerate(zip(a, b)): same(x, y, f'{where}[{i}]')
    else:
        assert a == b, (where, a, b)
for name in ['single', 'single_mask', 'grid', 'grid_mask', 'overlap']:
    j = json.load(open(name + '.json'))
    same(ref[name]['json'], j, name)
    out = open(name + '.out').read()
    if ref[name]['stdout']:
        assert out == ref[name]['stdout'], (name, out, ref[name]['stdout'])
# Additive keys only: what the GUI shows next to the numbers.
assert json.load(open('single.json'))['generated_text'].split() == ['number', 'seven', 'hundred', 'twelve']
o = json.load(open('overlap.json'))
assert o['a'] == 'circuit_ioi.json' and o['b'] == 'circuit_co.json' and o['task_a'] and o['task_b']
PY"
exit $fail
