#!/usr/bin/env bash
# A model split across devices gives the numbers of the same model on one device, for every analysis that
# runs a forward pass (issue #23). On a CPU machine the split is forced with `--device cpu:0,cpu`: the blocks
# of the second half and the home device are distinct devices to mechscope (residual hops, per-device masks
# and rotary tables, hooks seeing block activations moved to the home device, gradients through that move),
# while the copies are exact, so the JSON numbers must be identical. scripts/device/split_devices.sh runs the
# same comparison with cuda:0 against cuda:0,cuda:1 (or cuda:0,cpu) on a GPU machine.
# $1 = mechscope-cli, $2 = shared dir (unused). Exit 77 = skip. Optional: SPLIT_DEVICES="cuda:0 cuda:0,cpu".
set -u
CLI="$1"
PY=${PYTHON:-/usr/bin/python3}
# shellcheck source=tests/support/cli_test_lib.sh
source "$(dirname "$0")/../support/cli_test_lib.sh"
read -r ONE SPLIT <<<"${SPLIT_DEVICES:-cpu cpu:0,cpu}"
TOL=${SPLIT_TOLERANCE:-0}

"$CLI" plant --out "$tmp/m" >/dev/null 2>&1 || { echo "plant failed"; exit 77; }
M="$tmp/m"
"$CLI" inspect --model "$M" --device "$SPLIT" >"$tmp/inspect.txt" 2>&1
if ! grep -q "layers 0-" "$tmp/inspect.txt"; then echo "FAIL: inspect does not show the split"; cat "$tmp/inspect.txt"; fail=1; fi

WORDS=$($PY - "$M" <<'PY'
import json,sys
vocab=json.load(open(sys.argv[1]+"/tokenizer.json"))["model"]["vocab"]
words=[w for w in vocab if w.isalpha() and w.islower()][:40]
print(" ".join(words[:5]+[";"]+words[5:30]))
PY
)
names=(Mary John Alice Bob Anna James Sarah David)
: > "$tmp/ioi.jsonl"
for i in 0 1 2 3; do
  a=${names[$i]}; b=${names[$(( (i + 1) % 8 ))]}
  c=${names[$(( (i + 2) % 8 ))]}; d=${names[$(( (i + 3) % 8 ))]}; e=${names[$(( (i + 4) % 8 ))]}
  echo "{\"clean\": \"When $a and $b were at the store , $b gave a ring to\", \"corrupted\": \"When $c and $d were at the store , $e gave a ring to\", \"answer\": \"$a\", \"incorrect\": \"$b\"}" >> "$tmp/ioi.jsonl"
done
$PY - "$M" "$tmp" <<'PY'
import json,sys
vocab=json.load(open(sys.argv[1]+"/tokenizer.json"))["model"]["vocab"]
needle=["magic","number","seven","hundred","twelve"]
filler=[w for w in vocab if w.isalpha() and w.islower() and w not in set(needle)][:20]
json.dump([[0]+[vocab[w] for w in filler[:10]+needle+filler[10:20]+["magic"]]],open(sys.argv[2]+"/needle.json","w"))
PY

# name | command arguments (after --model M --device D --json FILE)
cases=(
  "sinks|sinks --prompt \"$WORDS\""
  "sinks-materialize|sinks --prompt \"$WORDS\" --materialize"
  "waad-fai|waad-fai --prompt \"$WORDS\" --fai-horizon 1:5"
  "constraint|constraint-attention --prompt \"$WORDS\" --constraint-tokens 2:4 --response \"$WORDS\""
  "overview|attention-overview --prompt \"$WORDS\""
  "influence|attention-influence --prompt \"$WORDS\" --heads 1.0,2.0"
  "logit-lens|logit-lens --prompt \"$WORDS\""
  "ov-qk|ov-qk --prompt \"$WORDS\""
  "dla|dla --dataset $tmp/ioi.jsonl"
  "patch|patch --dataset $tmp/ioi.jsonl --method both"
  "patch-path|patch --dataset $tmp/ioi.jsonl --path-receivers 3.0.q,3.1.q"
  "ablate|ablate --dataset $tmp/ioi.jsonl --heads 3.0,3.1"
  "intervene|intervene --dataset $tmp/ioi.jsonl --heads 3.0,3.1 --onto incorrect"
  "eap|eap --dataset $tmp/ioi.jsonl --check-top 3"
  "eap-ig|eap --dataset $tmp/ioi.jsonl --method eap-ig --steps 3"
  "retrieval|retrieval --token-ids $tmp/needle.json --needle-span 11:16 --max-new-tokens 4 --no-success-filter"
)
for c in "${cases[@]}"; do
  name=${c%%|*}; args=${c#*|}
  for dev in "$ONE" "$SPLIT"; do
    tag=$([ "$dev" = "$ONE" ] && echo one || echo split)
    if ! eval "\"$CLI\" $args --model \"$M\" --device \"$dev\" --json \"$tmp/$name.$tag.json\"" >/dev/null 2>"$tmp/$name.$tag.err"; then
      echo "FAIL: $name on --device $dev exits non-zero:"; tail -3 "$tmp/$name.$tag.err"; fail=1; continue 2
    fi
  done
  if $PY - "$tmp/$name.one.json" "$tmp/$name.split.json" "$TOL" <<'PY'
import json,math,sys
a,b=(json.load(open(p)) for p in sys.argv[1:3]); tol=float(sys.argv[3])
worst=[0.0,""]
def cmp(x,y,path):
    if isinstance(x,dict):
        assert isinstance(y,dict) and set(x)==set(y),f"{path}: keys differ"
        for k in x:
            if k in("provenance","timing"): continue
            cmp(x[k],y[k],f"{path}.{k}")
    elif isinstance(x,list):
        assert isinstance(y,list) and len(x)==len(y),f"{path}: lengths differ"
        for i,(u,v) in enumerate(zip(x,y)): cmp(u,v,f"{path}[{i}]")
    elif isinstance(x,float) or isinstance(y,float):
        if x is None or y is None or (isinstance(x,float) and math.isnan(x)): assert x==y or (x!=x and y!=y),f"{path}: {x} vs {y}"; return
        d=abs(x-y)/max(1.0,abs(x))
        if d>worst[0]: worst[:]=[d,path]
    else:
        assert x==y,f"{path}: {x!r} vs {y!r}"
cmp(a,b,"")
assert worst[0]<=tol,f"largest difference {worst[0]:.3g} at {worst[1]} (tolerance {tol})"
print(f"  largest relative difference {worst[0]:.3g}")
PY
  then echo "ok: $name equal on $ONE and $SPLIT"; else echo "FAIL: $name differs between $ONE and $SPLIT"; fail=1; fi
done

# The cache of every hook: same bytes in the datasets (h5py when present).
if "$CLI" --build-info 2>/dev/null | grep -qi 'hdf5.*yes\|hdf5 1\.' && $PY -c 'import h5py' 2>/dev/null; then
  for dev in "$ONE" "$SPLIT"; do
    "$CLI" run --model "$M" --prompt "$WORDS" --device "$dev" --cache "$tmp/c.$dev.h5" --hooks '*' >/dev/null 2>&1 || { echo "FAIL: run --cache on $dev"; fail=1; }
  done
  $PY - "$tmp/c.$ONE.h5" "$tmp/c.$SPLIT.h5" "$TOL" <<'PY' && echo "ok: every cached hook equal" || { echo "FAIL: cached hooks differ"; fail=1; }
import h5py,numpy as np,sys
a,b=h5py.File(sys.argv[1]),h5py.File(sys.argv[2]); tol=float(sys.argv[3]); n=0
def visit(name,obj):
    global n
    if isinstance(obj,h5py.Dataset) and name.startswith("activations"):
        x,y=obj[()],b[name][()]; n+=1
        assert x.shape==y.shape and np.allclose(x,y,rtol=tol,atol=tol,equal_nan=True),name
a.visititems(visit); assert n>100,n
PY
fi
exit $fail
