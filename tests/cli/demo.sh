#!/usr/bin/env bash
# The README run command without a display: `mechscope-cli demo` runs every analysis on the embedded
# planted model and recovers the planted answers (tasks solved, circuits' overlap 1/3).
set -euo pipefail
cli=$1
py=/usr/bin/python3
[ -x "$py" ] || { echo "no /usr/bin/python3: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
MECHSCOPE_CACHE="$tmp/cache" "$cli" demo --out "$tmp/demo" > "$tmp/out.txt" 2>&1 || { cat "$tmp/out.txt"; exit 1; }
grep -q "demo output: " "$tmp/out.txt"
"$py" - "$tmp/demo" <<'PY'
import json, os, sys
d = sys.argv[1]
s = json.load(open(f"{d}/summary.json"))
for t in s["tasks"]:
    assert t["predicted"] == t["expected"], t
bad = [a for a in s["analyses"] if a["status"] != "ok"]
assert not bad, bad
o = json.load(open(f"{d}/analyses/overlap.json"))
assert abs(o["jaccard"] - 1 / 3) < 1e-9 and sorted(o["shared"]) == ["3.0", "3.1"], o
r = json.load(open(f"{d}/analyses/retrieval.json"))
scores = r["retrieval_score"]
top = sorted(((scores[l][h], f"{l}.{h}") for l in range(len(scores)) for h in range(len(scores[l]))), reverse=True)[:2]
assert sorted(n for _, n in top) == ["1.0", "2.0"], top
assert s["cache"].endswith(".h5") or s["cache"].startswith("unavailable"), s["cache"]
print("demo OK:", len(s["analyses"]), "analyses,", len(s["figures"]), "figures")
PY
