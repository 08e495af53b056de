#!/usr/bin/env bash
# Causal analyses as processes on the planted model: circuit discovery on IOI and Colored Objects
# JSONL datasets (texts in the planted vocabulary) recovers the planted circuits, overlap = 1/3 and 1/2,
# patch/ablate/intervene honour their JSON contracts, bad input exits 2.
set -euo pipefail
cli=$1
py=/usr/bin/python3
[ -x "$py" ] || { echo "no /usr/bin/python3: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$cli" plant --out "$tmp/planted" >/dev/null

# IOI-like prompts: When A and B were at the store , B gave a ring to → A (p_ABC corruption).
names=(Mary John Alice Bob Anna James Sarah David)
: > "$tmp/ioi.jsonl"
for i in 0 1 2 3 4 5 6 7; do
  a=${names[$i]}; b=${names[$(( (i + 1) % 8 ))]}
  c=${names[$(( (i + 2) % 8 ))]}; d=${names[$(( (i + 3) % 8 ))]}; e=${names[$(( (i + 4) % 8 ))]}
  echo "{\"clean\": \"When $a and $b were at the store , $b gave a ring to\", \"corrupted\": \"When $c and $d were at the store , $e gave a ring to\", \"answer\": \"$a\", \"incorrect\": \"$b\"}" >> "$tmp/ioi.jsonl"
done
# Colored-Objects-like prompts with mindiff corruption (the query object changes).
colours=(red orange yellow green blue purple brown black)
objects=(pen cup ball book ring bowl)
: > "$tmp/co.jsonl"
for i in 0 1 2 3 4 5 6 7; do
  c0=${colours[$i]}; c1=${colours[$(( (i + 3) % 8 ))]}; c2=${colours[$(( (i + 5) % 8 ))]}
  o0=${objects[$(( i % 6 ))]}; o1=${objects[$(( (i + 1) % 6 ))]}; o2=${objects[$(( (i + 2) % 6 ))]}
  body="On the table I see a $c0 $o0 , a $c1 $o1 and a $c2 $o2 . The"
  echo "{\"clean\": \"$body $o1 is\", \"corrupted\": \"$body $o2 is\", \"answer\": \"$c1\", \"incorrect\": \"$c2\"}" >> "$tmp/co.jsonl"
done

"$cli" circuit --model "$tmp/planted" --task "$tmp/ioi.jsonl" --json "$tmp/a.json" >/dev/null
"$cli" circuit --model "$tmp/planted" --task "$tmp/co.jsonl" --json "$tmp/b.json" >/dev/null
"$cli" overlap "$tmp/a.json" "$tmp/b.json" --json "$tmp/o.json" >/dev/null
"$cli" patch --model "$tmp/planted" --dataset "$tmp/ioi.jsonl" --json "$tmp/p.json" >/dev/null
"$cli" patch --model "$tmp/planted" --dataset "$tmp/ioi.jsonl" --component resid_pre --per-position --method both --json "$tmp/pp.json" >/dev/null
"$cli" patch --model "$tmp/planted" --dataset "$tmp/ioi.jsonl" --path-receivers 3.0.q,3.1.q --json "$tmp/path.json" >/dev/null
"$cli" ablate --model "$tmp/planted" --dataset "$tmp/ioi.jsonl" --heads 3.0,3.1 --json "$tmp/ab.json" >/dev/null
"$cli" intervene --model "$tmp/planted" --dataset "$tmp/ioi.jsonl" --heads 3.0,3.1 --onto incorrect --json "$tmp/iv.json" >/dev/null
"$py" - "$tmp" <<'PY'
import json, sys
t = sys.argv[1]
a, b, o = (json.load(open(f"{t}/{n}.json")) for n in ("a", "b", "o"))
heads = lambda c: sorted(h["name"] for h in c["heads"])
assert heads(a) == ["1.1", "2.1", "3.0", "3.1"], heads(a)
assert heads(b) == ["0.0", "1.2", "3.0", "3.1"], heads(b)
assert abs(o["jaccard"] - 1 / 3) < 1e-9 and abs(o["intersection_over_min"] - 0.5) < 1e-9, o
assert sorted(o["shared"]) == ["3.0", "3.1"] and [s["top_percent"] for s in o["sweep"]] == [1, 2, 5, 10]
p = json.load(open(f"{t}/p.json"))
assert len(p["scores"]) == 24 and len(p["scores"][0]) == 4 and p["normalisation"] == "denoising"
assert p["metric_clean"] > 10 and abs(p["metric_corrupt"]) < 1 and p["scores"][3][0] > 0.2
pp = json.load(open(f"{t}/pp.json"))
assert len(pp["scores"]) == 24 and len(pp["scores"][0]) == 15 and "attribution_scores" in pp, (len(pp["scores"][0]))
# Layer 0, per position: only the name positions differ; the last position's residual equals in both runs.
assert abs(pp["scores"][0][14]) < 1e-5 and max(pp["scores"][0]) > 0.2
path = json.load(open(f"{t}/path.json"))
assert path["effect"][2][1] > 0.5 and max(abs(x) for row in path["effect"][:2] for x in row) < 0.01, path["effect"][:3]
assert path["normalisation"] == "ioi-percent"
ab = json.load(open(f"{t}/ab.json"))
assert ab["metric_before"] > 10 and abs(ab["metric_after"]) < 1 and len(ab["per_prompt"]) == 8
iv = json.load(open(f"{t}/iv.json"))
assert iv["accuracy_before"] == 1 and iv["accuracy_after"] == 0, iv
PY
set +e
"$cli" patch --model "$tmp/planted" --dataset "$tmp/missing.jsonl" --json "$tmp/x.json" 2>/dev/null; rc1=$?
"$cli" overlap "$tmp/ioi.jsonl" "$tmp/b.json" 2>/dev/null; rc2=$?
"$cli" ablate --model "$tmp/planted" --dataset "$tmp/ioi.jsonl" --heads 99.0 --json "$tmp/x.json" 2>/dev/null; rc3=$?
set -e
[ "$rc1" = 2 ] && [ "$rc2" = 2 ] && [ "$rc3" = 2 ] || { echo "bad input exits: $rc1 $rc2 $rc3 (want 2 2 2)"; exit 1; }
echo "causal CLI OK"
