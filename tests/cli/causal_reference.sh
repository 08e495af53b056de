#!/usr/bin/env bash
# Issue #19 through the CLI: on the reference prompts (tests/data/trained/references/ioi_dataset.jsonl,
# token ids with role positions) the trained GPT-2's `dla --copy-roles IO,S1,S2` and Wang et al.'s
# knockout of (head, position) pairs (`ablate --knockout --method mean --per-template --heads H@END,…`)
# equal the independent Python port (circuits_ioi_gpt2-ioi.json, scripts/reference/circuits_ref.py).
# Bounds as tests/analysis/test_trained_circuits.cpp: 1e-4·max(1, |ref|) on logit differences, and a
# copy-score hit may flip only where the reference's margin is below 1e-3 (none does on this model).
set -euo pipefail
cli=$1
py=/usr/bin/python3
here="$(cd "$(dirname "$0")" && pwd)"
model="$here/../data/trained/gpt2-ioi"
refs="$here/../data/trained/references"
[ -x "$py" ] || { echo "no /usr/bin/python3: skipped"; exit 77; }
[ -f "$model/model.safetensors" ] || { echo "$model/model.safetensors is absent: skipped"; exit 77; }
[ -f "$refs/circuits_ioi_gpt2-ioi.json" ] || { echo "the circuits reference JSON is absent: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

heads=$("$py" -c "
import json, sys
ko = json.load(open(sys.argv[1]))['knockout']
print(','.join(f\"{k['head']}@{p}\" for k in ko['kept'] for p in k['positions']))" "$refs/circuits_ioi_gpt2-ioi.json")
"$cli" dla --model "$model" --dataset "$refs/ioi_dataset.jsonl" --copy-roles IO,S1,S2 --json "$tmp/dla.json" >/dev/null
"$cli" ablate --model "$model" --dataset "$refs/ioi_dataset.jsonl" --knockout --method mean --per-template \
  --heads "$heads" --json "$tmp/ko.json" >/dev/null
# A role the prompts do not have is a clear input error (exit 2), not a crash.
set +e
"$cli" dla --model "$model" --dataset "$refs/ioi_dataset.jsonl" --copy-roles NOPE --json "$tmp/bad.json" 2>"$tmp/err.txt"
rc=$?
set -e
[ "$rc" = 2 ] || { echo "dla with an unknown role exited $rc"; cat "$tmp/err.txt"; exit 1; }
grep -q "NOPE" "$tmp/err.txt" || { echo "the error does not name the role"; cat "$tmp/err.txt"; exit 1; }
[ ! -e "$tmp/bad.json" ] || { echo "a failed dla left an output file"; exit 1; }

"$py" - "$tmp" "$refs/circuits_ioi_gpt2-ioi.json" <<'PY'
import json, sys
t, ref = sys.argv[1], json.load(open(sys.argv[2]))
tol = lambda r: 1e-4 * max(1.0, abs(r))
dla = json.load(open(f"{t}/dla.json"))
assert dla["prompts"] == ref["n_prompts"], dla["prompts"]
for got_row, ref_row in zip(dla["heads"], ref["dla"]["heads"]):
    for g, r in zip(got_row, ref_row):
        assert abs(g - r) <= tol(r), (g, r)
for g, r in zip(dla["mlp"], ref["dla"]["mlp"]):
    assert abs(g - r) <= tol(r), (g, r)
assert abs(dla["rest"] - ref["dla"]["rest"]) <= tol(ref["dla"]["rest"])
cs = ref["copy_score"]
for sign in ("positive", "negative"):
    for l, row in enumerate(cs[sign]):
        for h, r in enumerate(row):
            g = dla["copy_score"][sign][l][h]
            slack = 100.0 / dla["copy_score"]["pairs"] if cs[sign + "_min_abs_margin"][l][h] < 1e-3 else 1e-9
            assert abs(g - r) <= slack, (sign, l, h, g, r)
ko = json.load(open(f"{t}/ko.json"))
F_M, F_C = ref["knockout"]["F_M"], ref["knockout"]["F_C"]
assert abs(ko["metric_before"] - F_M) <= tol(F_M), (ko["metric_before"], F_M)
assert abs(ko["metric_after"] - F_C) <= tol(F_C), (ko["metric_after"], F_C)
acc = ref["accuracy"]["clean"]
assert ko["accuracy_before"] == acc["top1"] and ko["above_before"] == acc["io_above_s"], ko
print(f"dla 2.0 {dla['heads'][2][0]:.4f} (ref {ref['dla']['heads'][2][0]:.4f}); knockout F(C) {ko['metric_after']:.4f} (ref {F_C:.4f})")
PY

# Colored Objects on gpt2-co (solves the task): `intervene --onto incorrect` on the port's heads moves
# top-1 accuracy as the port does (1.0 -> 0.425), Merullo et al.'s experiment.
co_model="$here/../data/trained/gpt2-co"
co_ref="$refs/circuits_co_gpt2-co.json"
if [ -f "$co_model/model.safetensors" ] && [ -f "$co_ref" ]; then
  co_heads=$("$py" -c "import json,sys; print(','.join(json.load(open(sys.argv[1]))['intervention']['heads']))" "$co_ref")
  "$cli" intervene --model "$co_model" --dataset "$refs/co_dataset.jsonl" --heads "$co_heads" --onto incorrect \
    --json "$tmp/iv.json" >/dev/null
  "$py" - "$tmp/iv.json" "$co_ref" <<'PY'
import json, sys
iv, ref = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))["intervention"]
tol = lambda r: 1e-4 * max(1.0, abs(r))
assert iv["prompts_without_keys"] == 0, iv
assert abs(iv["metric_before"] - ref["before"]["mean_ld"]) <= tol(ref["before"]["mean_ld"]), (iv["metric_before"], ref["before"]["mean_ld"])
assert abs(iv["metric_after"] - ref["after_incorrect"]["mean_ld"]) <= tol(ref["after_incorrect"]["mean_ld"]), (iv["metric_after"], ref["after_incorrect"]["mean_ld"])
assert iv["accuracy_before"] == ref["before"]["top1"] and iv["accuracy_after"] == ref["after_incorrect"]["top1"], iv
assert iv["accuracy_before"] - iv["accuracy_after"] >= 0.4, iv
print(f"intervene on gpt2-co: top-1 {iv['accuracy_before']:.3f} -> {iv['accuracy_after']:.3f} (ref {ref['after_incorrect']['top1']:.3f})")
PY
else
  echo "gpt2-co or its reference is absent: Colored Objects intervention check skipped"
fi
echo "causal reference CLI OK"
