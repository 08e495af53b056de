#!/usr/bin/env bash
# `mechscope-cli run --cache` writer options (issue 11) on a real forward of a synthesized tiny GPT-2 and Llama:
#  - the background writer (default --cache-queue-mib 256, and a 1 MiB queue that makes the forward wait) writes
#    exactly the bytes of every dataset that --cache-queue-mib 0 (the forward's thread) writes;
#  - --cache-dtype fp16 / bf16 store float16 / bfloat16-bits datasets that round the fp32 cache's values
#    (relative error ≤ 2^-11 / 2^-8 of each element's magnitude), tokens unchanged, root attribute storage_dtype;
#  - --cache-masked-tiles (600 tokens: 3 × 3 tiles of 256 per head) reads back through h5py exactly as the
#    default cache, while libhdf5 reports only the 6 live tiles per head of every pattern and scores dataset
#    allocated (store/masked_tiles.hpp) and the file is smaller;
#  - a bad --cache-dtype or a negative --cache-queue-mib exits 2 with one line and writes nothing.
# Args: $1 = mechscope-cli, $2 = shared dir (unused). Exit 77 = skipped (no HDF5, no /usr/bin/python3 with h5py).
set -uo pipefail
cli=$1
py=/usr/bin/python3
"$cli" cache-selftest --help >/dev/null 2>&1 || { echo "no HDF5 store in this build: skipped"; exit 77; }
$py -c 'import h5py, numpy' 2>/dev/null || { echo "no /usr/bin/python3 with h5py + numpy: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
$py -c 'import json; json.dump([[(i * 37 + 11) % 200 for i in range(40)], [(i * 13 + 5) % 200 for i in range(40)]], open("'"$tmp"'/ids.json", "w"))'

for family in gpt2 llama; do
  "$cli" synth --family "$family" --preset tiny --out "$tmp/$family" >/dev/null 2>&1 || fail "synth $family"
  run() { "$cli" run --model "$tmp/$family" --token-ids "$tmp/ids.json" --hooks '*' --cache "$@" >/dev/null 2>"$tmp/err.txt" \
    || fail "$family: run $*: $(cat "$tmp/err.txt")"; }
  run "$tmp/sync.h5" --cache-queue-mib 0
  run "$tmp/async.h5"
  run "$tmp/async1.h5" --cache-queue-mib 1
  run "$tmp/fp16.h5" --cache-dtype fp16
  run "$tmp/bf16.h5" --cache-dtype bf16
  $py - "$tmp" "$family" <<'PY' || fail "$family: content check"
import sys, h5py, numpy as np
tmp, family = sys.argv[1], sys.argv[2]
def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, (o[()], dict(o.attrs))) if isinstance(o, h5py.Dataset) else None)
    return out
ref = datasets(f"{tmp}/sync.h5")
assert len(ref) > 30, len(ref)
for other in ("async.h5", "async1.h5"):
    got = datasets(f"{tmp}/{other}")
    assert sorted(got) == sorted(ref), (other, set(got) ^ set(ref))
    for name, (value, attrs) in ref.items():
        g, ga = got[name]
        assert g.dtype == value.dtype and g.shape == value.shape, (other, name)
        assert g.tobytes() == value.tobytes(), f"{other}: {name} differs"
        assert {k: str(v) for k, v in ga.items()} == {k: str(v) for k, v in attrs.items()}, (other, name)
for other, store, eps in (("fp16.h5", np.float16, 2.0 ** -11), ("bf16.h5", np.uint16, 2.0 ** -8)):
    got = datasets(f"{tmp}/{other}")
    with h5py.File(f"{tmp}/{other}", "r") as f:
        assert f.attrs["storage_dtype"] in (b"float16", "float16", b"bfloat16", "bfloat16"), f.attrs["storage_dtype"]
    worst = 0.0
    for name, (value, _) in ref.items():
        g, _ = got[name]
        if value.dtype != np.float32:
            assert g.tobytes() == value.tobytes(), (other, name)
            continue
        assert g.dtype == store, (other, name, g.dtype)
        x = g.astype(np.float32) if store == np.float16 else (g.astype(np.uint32) << 16).view(np.float32)
        finite = np.isfinite(value)
        assert np.array_equal(np.isfinite(x), finite), (other, name)
        err = np.abs(x[finite] - value[finite]) / np.maximum(np.abs(value[finite]), 2.0 ** -14)
        worst = max(worst, float(err.max()) if err.size else 0.0)
    assert worst <= eps * 1.0001, (other, worst)
    print(f"{family}: {other}: {len(got)} datasets, worst relative rounding {worst:.2e} (bound {eps:.2e})")
print(f"{family}: background writer (256 MiB and 1 MiB queues) bit-identical to the forward's thread, {len(ref)} datasets")
PY
  rm -f "$tmp"/*.h5
done

# Masked tiles on a real forward: 600 tokens, so 3 of the 9 tiles per head lie wholly above the diagonal.
$py -c 'import json; json.dump([[(i * 37 + 11) % 200 for i in range(600)]], open("'"$tmp"'/long.json", "w"))'
for family in gpt2 llama; do
  for variant in dense tiles; do
    extra=(); [ $variant = tiles ] && extra=(--cache-masked-tiles)
    "$cli" run --model "$tmp/$family" --token-ids "$tmp/long.json" --hooks '*' --cache "$tmp/$variant.h5" "${extra[@]}"       >/dev/null 2>"$tmp/err.txt" || fail "$family: run --cache $variant: $(cat "$tmp/err.txt")"
  done
  $py - "$tmp" "$family" <<'PY' || fail "$family: masked tiles check"
import os, sys, h5py, numpy as np
tmp, family = sys.argv[1], sys.argv[2]
dense, tiles = h5py.File(f"{tmp}/dense.h5", "r"), h5py.File(f"{tmp}/tiles.h5", "r")
names = []
dense.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
attention = 0
for n in names:
    a, b = dense[n], tiles[n]
    assert a.shape == b.shape and a.dtype == b.dtype, n
    assert a[()].tobytes() == b[()].tobytes(), f"{n}: masked-tile cache reads differently"
    if n.endswith("attn.hook_pattern") or n.endswith("attn.hook_attn_scores"):
        attention += 1
        batch, heads = b.shape[0], b.shape[1]
        group = min(heads, 4)  # 256² fp32 tiles of 4 heads fill the 1 MiB chunk target (the tiny models have 4)
        assert heads % group == 0 and b.chunks == (1, group, 256, 256), (n, b.chunks)
        assert b.id.get_num_chunks() == batch * (heads // group) * 6, (n, b.id.get_num_chunks())
        bands = -(-a.shape[2] // a.chunks[2])  # the default's row bands [1, 1, rows, 600], every one written
        assert a.chunks[3] == a.shape[3] and a.id.get_num_chunks() == batch * heads * bands, (n, a.chunks)
assert attention >= 4, attention
sd, st = os.path.getsize(f"{tmp}/dense.h5"), os.path.getsize(f"{tmp}/tiles.h5")
assert st < sd, (st, sd)
print(f"{family}: --cache-masked-tiles: {len(names)} datasets identical to the default cache, "
      f"{attention} attention maps with 6 of 9 tiles stored per head; file {st / sd:.0%} of the default")
PY
  rm -f "$tmp"/*.h5
done

"$cli" run --model "$tmp/gpt2" --token-ids "$tmp/ids.json" --hooks '*' --cache "$tmp/x.h5" --cache-dtype int8 >/dev/null 2>"$tmp/err.txt"
[ $? = 2 ] && grep -q "cache-dtype" "$tmp/err.txt" && [ ! -e "$tmp/x.h5" ] && [ ! -e "$tmp/x.h5.partial" ] \
  || fail "--cache-dtype int8: $(cat "$tmp/err.txt")"
"$cli" run --model "$tmp/gpt2" --token-ids "$tmp/ids.json" --hooks '*' --cache "$tmp/x.h5" --cache-queue-mib -1 >/dev/null 2>"$tmp/err.txt"
[ $? = 2 ] && grep -q "cache-queue-mib" "$tmp/err.txt" && [ ! -e "$tmp/x.h5" ] || fail "--cache-queue-mib -1: $(cat "$tmp/err.txt")"
echo "ok: bad --cache-dtype / --cache-queue-mib refused with exit 2"
