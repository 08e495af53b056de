#!/usr/bin/env bash
# `mechscope-cli batch` end to end on the embedded planted model (examples/planted_all.toml: every
# analysis, IOI + Colored Objects): a broken plan is rejected with line numbers before any compute;
# the run recovers the planted answers; shard 0/2 is SIGKILLed mid-run (no complete-looking partial
# outputs) and rerun, shard 1/2 is interrupted by SIGINT (exit 130) and rerun, and the two merged
# equal the single run (JSON numerically, HDF5 datasets, summary.json modulo timings).
set -euo pipefail
cli=$1
py=/usr/bin/python3
[ -x "$py" ] || { echo "no /usr/bin/python3: skipped"; exit 77; }
"$cli" batch --help > /dev/null 2>&1 || { echo "built without toml++: no batch command; skipped"; exit 77; }
src=$(cd "$(dirname "$0")/../.." && pwd)
plan=$src/examples/planted_all.toml
tmp=$(mktemp -d)
bg=""
trap '[ -n "$bg" ] && kill -9 -- -"$bg" 2>/dev/null; rm -rf "$tmp"' EXIT
export MECHSCOPE_CACHE="$tmp/cache"

# 1. A broken plan: every error with its line, exit 2, nothing created.
cat > "$tmp/broken.toml" <<'TOML'
[models.m]
path = "embedded"
colour = "red"

[inputs.ids]
kind = "token-ids"
file = "missing.json"

[[analysis]]
type = "sinkz"
inputs = ["ids"]

[[analysis]]
type = "patch"
inputs = ["ids"]
max_batch_rows = "many"
TOML
rc=0
"$cli" batch "$tmp/broken.toml" --out "$tmp/broken-out" > "$tmp/broken.txt" 2>&1 || rc=$?
cat "$tmp/broken.txt"
[ "$rc" -eq 2 ] || { echo "broken plan: exit $rc, expected 2"; exit 1; }
for want in "broken.toml:3:1: unknown key 'colour'" "broken.toml:7:1: inputs.ids.file: file" "broken.toml:10:8: unknown analysis 'sinkz'" \
            "broken.toml:13:1: analysis 'patch' (type patch) cannot run on input 'ids'" "broken.toml:16:18: analysis 'patch' (type patch): 'max_batch_rows' must be an integer"; do
  grep -qF "$want" "$tmp/broken.txt" || { echo "missing diagnostic: $want"; exit 1; }
done
[ ! -e "$tmp/broken-out" ] || { echo "a rejected plan created its output folder"; exit 1; }

# 2. An item that fails at run time (token id outside the vocabulary): exit 3, listed in summary.json,
#    its folder holds the log only; the other item is fine.
echo '[[0, 51, 99999]]' > "$tmp/bad_ids.json"
echo '[[0, 51, 52, 53]]' > "$tmp/ok_ids.json"
cat > "$tmp/partial.toml" <<'TOML'
[models.planted]
path = "embedded"
[inputs.bad]
kind = "token-ids"
file = "bad_ids.json"
[inputs.good]
kind = "token-ids"
file = "ok_ids.json"
[[analysis]]
type = "sinks"
inputs = ["bad", "good"]
TOML
rc=0
"$cli" batch "$tmp/partial.toml" --out "$tmp/partial" --quiet 2> "$tmp/partial.err" || rc=$?
[ "$rc" -eq 3 ] || { cat "$tmp/partial.err"; echo "failing item: exit $rc, expected 3"; exit 1; }
"$py" - "$tmp/partial" <<'PY'
import json, os, sys
d = sys.argv[1]
s = json.load(open(f"{d}/summary.json"))
assert s["failed"] == ["planted/sinks/bad"] and s["counts"] == {"failed": 1, "ok": 1}, s
bad = next(e for e in s["items"] if e["key"] == "planted/sinks/bad")
assert bad["exit_code"] == 2 and "99999" in bad["error"], bad
assert sorted(os.listdir(f"{d}/planted/sinks/bad")) == ["command.txt", "run.log"], os.listdir(f"{d}/planted/sinks/bad")
PY

# 3. The whole plan, progress as JSON events.
t0=$(date +%s)
"$cli" batch "$plan" --out "$tmp/single" --progress-json > "$tmp/events.jsonl" 2> "$tmp/single.err" || { cat "$tmp/single.err"; exit 1; }
echo "single run: $(( $(date +%s) - t0 )) s"

# 4. Shard 0/2, SIGKILLed mid-run (the whole process group, as a preempted job), then rerun twice.
setsid "$cli" batch "$plan" --out "$tmp/s0" --shard 0/2 --quiet & bg=$!
for _ in $(seq 1 1200); do
  n=$( (ls "$tmp/s0/.batch/done" 2>/dev/null || true) | wc -l)
  [ "$n" -ge 2 ] && break
  sleep 0.1
done
kill -9 -- -"$bg"
wait "$bg" 2>/dev/null || true
bg=""
"$py" - "$tmp/s0" <<'PY'
import json, os, sys
d = sys.argv[1]
done = {f[:-5].replace("__", "/") for f in os.listdir(f"{d}/.batch/done")}
assert len(done) >= 2, done
# No complete-looking partial output: every result.json outside .batch belongs to a recorded item.
for root, _, files in os.walk(d):
    if "/.batch" in root: continue
    if "result.json" in files:
        key = os.path.relpath(root, d)
        assert key in done, f"{key} has result.json but no record"
print("SIGKILLed shard 0:", len(done), "items recorded")
PY
"$cli" batch "$plan" --out "$tmp/s0" --shard 0/2 --progress-json > "$tmp/rerun.jsonl" 2>"$tmp/rerun.err" || { cat "$tmp/rerun.err"; exit 1; }
"$cli" batch "$plan" --out "$tmp/s0" --shard 0/2 --progress-json > "$tmp/rerun2.jsonl" 2>/dev/null

# 5. Shard 1/2 interrupted by SIGINT (exit 130, no work folder left), then finished.
"$cli" batch "$plan" --out "$tmp/s1" --shard 1/2 --quiet & pid=$!
for _ in $(seq 1 1200); do [ -n "$(ls "$tmp/s1/.batch/done" 2>/dev/null)" ] && break; sleep 0.1; done
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 130 ] || { echo "SIGINT: exit $rc, expected 130"; exit 1; }
[ -z "$(ls "$tmp/s1/.batch/work" 2>/dev/null)" ] || { echo "SIGINT left a work folder"; exit 1; }
cp "$tmp/s1/summary.json" "$tmp/interrupted.json"
"$cli" batch "$plan" --out "$tmp/s1" --shard 1/2 --quiet

# 6. Merge: both shards equal the single run; one shard alone has items missing (exit 3).
"$cli" merge "$tmp/s0" "$tmp/s1" --out "$tmp/merged"
rc=0
"$cli" merge "$tmp/s0" --out "$tmp/half" > /dev/null || rc=$?
[ "$rc" -eq 3 ] || { echo "merge of one shard of two: exit $rc, expected 3 (items missing)"; exit 1; }

"$py" - "$tmp" <<'PY'
import json, os, sys
import h5py, numpy as np
t = sys.argv[1]
N = 13  # examples/planted_all.toml: 13 (model, analysis, input) items
single = json.load(open(f"{t}/single/summary.json"))
items = {e["key"]: e for e in single["items"]}
assert len(items) == N and single["counts"] == {"ok": N}, single["counts"]
assert single["failed"] == []

# Progress events.
ev = [json.loads(l) for l in open(f"{t}/events.jsonl")]
assert ev[0] == {"event": "start", "total": N, "skipped": 0}, ev[0]
assert sum(e["event"] == "item_done" for e in ev) == N and ev[-1]["event"] == "finish" and ev[-1]["ok"] == N, ev[-1]

def res(key, d="single"):
    return json.load(open(f"{t}/{d}/{key}/result.json"))

def heads(hl, k):
    return [h["head"] for h in hl[k]]

# Planted answers (docs/planted-models.md).
circ = {k: sorted(heads(items[f"planted/circuit/{k}"]["headline"], "circuit_heads")) for k in ("ioi", "co")}
assert {"3.0", "3.1"} <= set(circ["ioi"]), circ
ov = res("planted/circuits-overlap/_")
assert sorted(ov["shared"]) == ["3.0", "3.1"], ov
assert sorted(circ["ioi"]) == ["1.1", "2.1", "3.0", "3.1"] and sorted(circ["co"]) == ["0.0", "1.2", "3.0", "3.1"], circ
assert abs(ov["jaccard"] - 1 / 3) < 1e-9, ov["jaccard"]
assert sorted(heads(items["planted/retrieval/needle"]["headline"], "top_retrieval_heads")[:2]) == ["1.0", "2.0"], items["planted/retrieval/needle"]
patch = items["planted/patch/ioi"]["headline"]
assert patch["metric_clean"] > patch["metric_corrupt"], patch
assert set(heads(patch, "top_heads")[:2]) == {"3.0", "3.1"}, patch
ab = items["planted/ablate/ioi"]["headline"]
assert ab["metric_before"] > 10 and abs(ab["metric_after"]) < 1e-3 and ab["accuracy_after"] == 0, ab
iv = items["planted/intervene/ioi"]["headline"]
assert iv["metric_before"] > 10 and iv["metric_after"] < -10, iv
sink = res("planted/sinks/sink_text")
assert any(s["position"] == 6 for s in sink["secondary_sinks"]), sink["secondary_sinks"]
ca = res("planted/constraint-attention/ioi")
assert ca["constraint_positions"] == [2], ca["constraint_positions"]
# HDF5 next to JSON, same numbers.
with h5py.File(f"{t}/single/planted/patch/ioi/result.h5") as f:
    np.testing.assert_allclose(f["analyses/patch/scores"][()], np.array(res("planted/patch/ioi")["scores"]), rtol=1e-6, atol=1e-6)
# Figures, or the note that this build has none.
if single["figures_available"]:
    figs = items["planted/sinks/sink_text"]["files"]["figures"]
    assert figs == ["planted/sinks/sink_text/figures/sink_score.png"], figs
    assert os.path.getsize(f"{t}/single/{figs[0]}") > 1000
report = open(f"{t}/single/report.md").read()
assert "planted/circuit/ioi" in report and "| ok |" in report

# Shards + merge == single (timings aside; data byte-identical or numerically equal).
def strip(s):
    s = json.loads(json.dumps(s))
    for e in s["items"]: e.pop("seconds", None)
    return s
def same_json(a, b, where):
    if isinstance(a, float) or isinstance(b, float):
        assert abs(a - b) <= 1e-6 * max(1.0, abs(a)), (where, a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a: same_json(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)): same_json(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)

merged = json.load(open(f"{t}/merged/summary.json"))
same_json(strip(merged), strip(single), "summary.json")
s0 = json.load(open(f"{t}/s0/summary.json"))
assert s0["shard"] == {"index": 0, "count": 2} and 0 < s0["counts"]["ok"] < N, s0["counts"]

def h5_datasets(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out

for d in ("merged",):
    for key in items:
        same_json(res(key, d), res(key), f"{d}/{key}")
        h = f"{t}/single/{key}/result.h5"
        if os.path.exists(h):
            a, b = h5_datasets(h), h5_datasets(f"{t}/{d}/{key}/result.h5")
            assert a.keys() == b.keys(), key
            for n in a:
                if isinstance(a[n], np.ndarray) and a[n].dtype.kind in "fiub":
                    np.testing.assert_allclose(a[n], b[n], rtol=1e-6, atol=1e-7, err_msg=f"{d}/{key}:{n}")
                else:
                    assert a[n] == b[n] or n.endswith("result_json"), (d, key, n)

# The SIGKILLed shard's reruns: the first skipped what was recorded, the second skipped everything.
first = json.loads(open(f"{t}/rerun.jsonl").readline())
assert first["event"] == "start" and 2 <= first["skipped"] < first["total"], first
again = [json.loads(l) for l in open(f"{t}/rerun2.jsonl")]
assert again[0]["skipped"] == again[0]["total"] and again[-1]["ok"] == 0, (again[0], again[-1])
interrupted = json.load(open(f"{t}/interrupted.json"))
assert interrupted["counts"].get("pending", 0) > 0 and interrupted["shard"] == {"index": 1, "count": 2}, interrupted["counts"]
print(f"batch OK: {N} items; circuits {circ}; SIGKILLed + SIGINTed shards rerun and merged == single run")
PY
