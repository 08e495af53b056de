#!/usr/bin/env bash
# Issue #19 as a user meets it, on the trained GPT-2 (tests/data/trained/gpt2-ioi, real GPT-2 tokenizer):
# `patch --dataset ioi` analyses every generated prompt (several token lengths, every template), and the
# Colored Objects answers are tokens of their prompts, so `intervene --onto incorrect` finds its targets
# in every prompt.
set -euo pipefail
cli=$1
py=/usr/bin/python3
model="$(cd "$(dirname "$0")/../data/trained/gpt2-ioi" 2>/dev/null && pwd)" || { echo "tests/data/trained/gpt2-ioi is absent: skipped"; exit 77; }
[ -x "$py" ] || { echo "no /usr/bin/python3: skipped"; exit 77; }
[ -f "$model/model.safetensors" ] || { echo "$model/model.safetensors is absent: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$cli" dataset ioi --model "$model" --n 40 --seed 2 --out "$tmp/ioi.jsonl" >/dev/null
"$cli" patch --model "$model" --dataset "$tmp/ioi.jsonl" --json "$tmp/p.json" >/dev/null
"$cli" dataset colored-objects --model "$model" --n 30 --seed 4 --out "$tmp/co.jsonl" >/dev/null
"$cli" intervene --model "$model" --dataset "$tmp/co.jsonl" --heads 1.0,2.1 --onto incorrect --json "$tmp/iv.json" >/dev/null
"$py" - "$tmp" <<'PY'
import json, sys
t = sys.argv[1]
ioi = [json.loads(l) for l in open(f"{t}/ioi.jsonl")]
p = json.load(open(f"{t}/p.json"))
assert p["prompts"] == 40 and p["prompts_dropped"] == 0, (p["prompts"], p["prompts_dropped"])
assert len(p["prompt_lengths"]) > 2 and sum(g["prompts"] for g in p["prompt_lengths"]) == 40, p["prompt_lengths"]
assert len(p["metric_clean_per_prompt"]) == 40 and len(p["metric_patched"][0][0]) == 40
assert min(p["metric_clean_per_prompt"]) > 0  # the model solves IOI (README: accuracy 1.0)
for r in ioi:
    ids, pos = r["clean_ids"], r["positions"]
    assert ids[pos["IO"]] == r["answer_id"] and ids[pos["S1"]] == ids[pos["S2"]] == r["incorrect_id"], r
    assert pos["S1+1"] == pos["S1"] + 1 and pos["END"] == len(ids) - 1, r
co = [json.loads(l) for l in open(f"{t}/co.jsonl")]
for r in co:
    assert r["answer_id"] in r["clean_ids"] and r["incorrect_id"] in r["clean_ids"], r
    assert r["answer"] == r["answer"].lower() and r["answer"].startswith(" "), r["answer"]
    assert r["clean_ids"][r["positions"]["ANSWER"]] == r["answer_id"], r
iv = json.load(open(f"{t}/iv.json"))
assert iv["prompts"] == 30 and iv["prompts_without_keys"] == 0, iv
PY
echo "trained datasets CLI OK"
