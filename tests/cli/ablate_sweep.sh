#!/usr/bin/env bash
# `ablate --sweep` (issue #21): every head ablated alone equals `ablate --heads L.H` of that head, for the
# GUI's three ablations (zero, mean over the corrupted set, uniform attention), on prompts of two token
# lengths (two length groups, combined in dataset order); --sweep with --heads gives both in one run;
# neither, or --knockout without --heads, exits 2.
set -euo pipefail
cli=$1
py=/usr/bin/python3
[ -x "$py" ] || { echo "no /usr/bin/python3: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$cli" plant --out "$tmp/planted" >/dev/null

# IOI-like prompts in the planted vocabulary; every third drops "a" (one token shorter: a second group).
names=(Mary John Alice Bob Anna James Sarah David)
: > "$tmp/ioi.jsonl"
for i in 0 1 2 3 4 5; do
  a=${names[$i]}; b=${names[$(( (i + 1) % 8 ))]}
  c=${names[$(( (i + 2) % 8 ))]}; d=${names[$(( (i + 3) % 8 ))]}; e=${names[$(( (i + 4) % 8 ))]}
  art="a "; [ $(( i % 3 )) = 2 ] && art=""
  echo "{\"clean\": \"When $a and $b were at the store , $b gave ${art}ring to\", \"corrupted\": \"When $c and $d were at the store , $e gave ${art}ring to\", \"answer\": \"$a\", \"incorrect\": \"$b\"}" >> "$tmp/ioi.jsonl"
done

for method in zero mean uniform; do
  "$cli" ablate --model "$tmp/planted" --dataset "$tmp/ioi.jsonl" --method "$method" --sweep --json "$tmp/sweep_$method.json" > "$tmp/sweep_$method.txt"
  grep -q "largest drops" "$tmp/sweep_$method.txt" || { cat "$tmp/sweep_$method.txt"; exit 1; }
  for head in 3.0 2.1; do
    "$cli" ablate --model "$tmp/planted" --dataset "$tmp/ioi.jsonl" --method "$method" --heads "$head" --json "$tmp/one_${method}_$head.json" >/dev/null
  done
done

"$py" - "$tmp" <<'PY'
import json, sys
t = sys.argv[1]
for method in ("zero", "mean", "uniform"):
    s = json.load(open(f"{t}/sweep_{method}.json"))
    assert s["analysis"] == "ablate" and s["method"] == method and s["layout"] == "[layer][head]", s.keys()
    assert len(s["sweep"]) == 24 and all(len(row) == 4 for row in s["sweep"]), len(s["sweep"])
    assert s["prompts"] == 6 and len(s["prompt_lengths"]) == 2, (s["prompts"], s["prompt_lengths"])
    drops = [d["drop"] for d in s["top_drops"]]
    assert drops == sorted(drops, reverse=True) and len(drops) == 10, drops
    for d in s["top_drops"]:
        l, h = map(int, d["head"].split("."))
        assert abs(d["metric_after"] - s["sweep"][l][h]) < 1e-12 and abs(d["drop"] - (s["metric_before"] - d["metric_after"])) < 1e-9, d
    for head in ("3.0", "2.1"):
        one = json.load(open(f"{t}/one_{method}_{head}.json"))
        l, h = map(int, head.split("."))
        tol = 1e-6 * max(1.0, abs(one["metric_after"]))
        assert abs(s["metric_before"] - one["metric_before"]) < tol, (method, s["metric_before"], one["metric_before"])
        assert abs(s["sweep"][l][h] - one["metric_after"]) < tol, (method, head, s["sweep"][l][h], one["metric_after"])
    print(method, "before", round(s["metric_before"], 4), "top", [(d["head"], round(d["drop"], 3)) for d in s["top_drops"][:3]])
z = json.load(open(f"{t}/sweep_zero.json"))
assert z["metric_before"] > 5 and z["top_drops"][0]["drop"] > 1, z["top_drops"][:2]
PY

# Both in one run (the GUI's Ablation panel: the grid and a head set): each part equals its own run.
"$cli" ablate --model "$tmp/planted" --dataset "$tmp/ioi.jsonl" --sweep --heads 3.0 --json "$tmp/both.json" > "$tmp/both.txt"
grep -q "largest drops" "$tmp/both.txt" && grep -q "(1 heads)" "$tmp/both.txt" || { cat "$tmp/both.txt"; exit 1; }
"$py" - "$tmp" <<'PY'
import json, sys
t = sys.argv[1]
both, sweep, one = (json.load(open(f"{t}/{n}.json")) for n in ("both", "sweep_zero", "one_zero_3.0"))
assert both["sweep"] == sweep["sweep"] and both["top_drops"] == sweep["top_drops"], "sweep part differs"
assert both["metric_after"] == one["metric_after"] and both["heads"] == ["3.0"] == one["heads"], (both["metric_after"], one["metric_after"])
for l, row in enumerate(both["head_effect"]):
    for h, e in enumerate(row):
        assert abs(e - (both["sweep"][l][h] - both["metric_before"])) < 1e-9, (l, h)
PY

set +e
"$cli" ablate --model "$tmp/planted" --dataset "$tmp/ioi.jsonl" --json "$tmp/x.json" 2>/dev/null; rc2=$?
"$cli" ablate --model "$tmp/planted" --dataset "$tmp/ioi.jsonl" --sweep --knockout --json "$tmp/x.json" 2>/dev/null; rc3=$?
"$cli" ablate --model "$tmp/planted" --dataset "$tmp/ioi.jsonl" --method force --heads 3.0 --force-keys 1 --force-weights x \
  --json "$tmp/x.json" 2>"$tmp/err.txt"; rc4=$?
set -e
[ "$rc2" = 2 ] && [ "$rc3" = 2 ] && [ "$rc4" = 2 ] || { echo "bad input exits: $rc2 $rc3 $rc4 (want 2 2 2)"; exit 1; }
grep -q -- "--force-weights: 'x'" "$tmp/err.txt" || { cat "$tmp/err.txt"; exit 1; }
[ ! -e "$tmp/x.json" ] || { echo "a refused run left $tmp/x.json"; exit 1; }
echo "ablate --sweep OK"
