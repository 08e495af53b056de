#!/usr/bin/env bash
# Streaming is real with a real model forward: `mechscope-cli run --hooks '*' --cache` on a 44-layer GPT-2
# (d_model 64, 4 heads, random weights written here) over 2,048 tokens writes a cache of ≈ 6 GiB — ≥ 3× the
# 1.5 GiB address-space limit (prlimit --as; LibTorch alone maps ≈ 0.6 GiB) the process runs under — and succeeds. Peak RSS (getrusage of the
# child) is printed for docs/benchmarks.md. Content is checked with h5py against a small unlimited run.
# Args: $1 = mechscope-cli, $2 = shared dir (unused). Exit 77 = skipped (no HDF5, no python3+h5py, < 10 GiB free).
# Environment: STREAM_LAYERS (44), STREAM_POS (2048), STREAM_LIMIT_MIB (1536), STREAM_TMP (scratch folder).
set -uo pipefail
cli=$1
py=/usr/bin/python3
"$cli" cache-selftest --help >/dev/null 2>&1 || { echo "no HDF5 store in this build: skipped"; exit 77; }
$py -c 'import h5py, numpy' 2>/dev/null || { echo "no /usr/bin/python3 with h5py + numpy: skipped"; exit 77; }
command -v prlimit >/dev/null || { echo "no prlimit: skipped"; exit 77; }
# AddressSanitizer reserves terabytes of shadow address space at start-up: no RLIMIT_AS leaves room for it.
ldd "$cli" 2>/dev/null | grep -q libasan && { echo "AddressSanitizer build: an address-space limit cannot apply: skipped"; exit 77; }
tmp=${STREAM_TMP:-$(mktemp -d)}
trap 'rm -rf "$tmp"' EXIT
free_kib=$(df -Pk "$tmp" | awk 'NR == 2 { print $4 }')
[ "$free_kib" -gt $((10 << 20)) ] || { echo "less than 10 GiB free under $tmp: skipped"; exit 77; }
layers=${STREAM_LAYERS:-44}
pos=${STREAM_POS:-2048}
limit_mib=${STREAM_LIMIT_MIB:-1536}
export OMP_NUM_THREADS=1  # one thread: few per-thread arenas and stacks in the address space

# A GPT-2 folder: config.json + model.safetensors (HF names, Conv1D layouts), random weights.
$py - "$tmp/deep" "$layers" "$pos" <<'PY' || { echo "FAIL: could not write the model"; exit 1; }
import json, os, struct, sys
import numpy as np
out, L, ctx = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d, h, v, mlp = 64, 4, 1000, 256
os.makedirs(out, exist_ok=True)
json.dump({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_layer": L, "n_embd": d, "n_head": h,
           "n_inner": mlp, "n_positions": ctx, "vocab_size": v, "activation_function": "gelu_new",
           "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True, "bos_token_id": 0, "eos_token_id": 0},
          open(os.path.join(out, "config.json"), "w"))
rng = np.random.default_rng(0)
t = {"transformer.wte.weight": rng.normal(0, 0.5, (v, d)), "transformer.wpe.weight": rng.normal(0, 0.1, (ctx, d)),
     "transformer.ln_f.weight": np.ones(d), "transformer.ln_f.bias": np.zeros(d)}
for i in range(L):
    p = f"transformer.h.{i}."
    t[p + "ln_1.weight"], t[p + "ln_1.bias"] = np.ones(d), np.zeros(d)
    t[p + "ln_2.weight"], t[p + "ln_2.bias"] = np.ones(d), np.zeros(d)
    t[p + "attn.c_attn.weight"], t[p + "attn.c_attn.bias"] = rng.normal(0, 0.25, (d, 3 * d)), np.zeros(3 * d)
    t[p + "attn.c_proj.weight"], t[p + "attn.c_proj.bias"] = rng.normal(0, 0.05, (d, d)), np.zeros(d)
    t[p + "mlp.c_fc.weight"], t[p + "mlp.c_fc.bias"] = rng.normal(0, 0.1, (d, mlp)), np.zeros(mlp)
    t[p + "mlp.c_proj.weight"], t[p + "mlp.c_proj.bias"] = rng.normal(0, 0.05, (mlp, d)), np.zeros(d)
header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
for k, a in t.items():
    b = np.ascontiguousarray(a, dtype="<f4").tobytes()
    header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b); off += len(b)
hb = json.dumps(header).encode()
hb += b" " * (-len(hb) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(hb))); f.write(hb)
    for b in blobs: f.write(b)
json.dump([[(i * 37 + 11) % v for i in range(ctx)]], open(os.path.join(out, "..", "ids.json"), "w"))
PY

# The streamed run under the limit; peak RSS from getrusage(RUSAGE_CHILDREN) (prlimit execs the CLI).
t0=$(date +%s.%N)
peak_kib=$($py - "$tmp/run.log" prlimit --as=$((limit_mib << 20)) "$cli" run --model "$tmp/deep" --token-ids "$tmp/ids.json" \
  --hooks '*' --cache "$tmp/all.h5" <<'PY'
import resource, subprocess, sys
with open(sys.argv[1], "w") as log:
    rc = subprocess.run(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if rc == 0 else f"rc={rc}")
PY
)
t1=$(date +%s.%N)
case "$peak_kib" in
  rc=*) echo "FAIL: the run under prlimit --as=${limit_mib}MiB failed ($peak_kib):"; tail -5 "$tmp/run.log"; exit 1 ;;
esac
[ -f "$tmp/all.h5" ] && [ ! -e "$tmp/all.h5.partial" ] || { echo "FAIL: no all.h5"; exit 1; }
# What was streamed is the datasets' logical size (shape × element size, as h5py reads them back); the file is
# smaller, since the masked tiles of patterns and scores are not written (store/masked_tiles.hpp).
bytes=$($py -c 'import sys, h5py
f = h5py.File(sys.argv[1], "r"); n = 0
def add(name, obj):
    global n
    if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "fiu": n += obj.size * obj.dtype.itemsize
f.visititems(add); print(n)' "$tmp/all.h5")
file_bytes=$(stat -c %s "$tmp/all.h5")
limit=$((limit_mib << 20))
awk -v b="$bytes" -v f="$file_bytes" -v l="$limit" -v r="$peak_kib" -v w="$(echo "$t1 - $t0" | bc)" -v L="$layers" -v P="$pos" 'BEGIN {
  printf "stream_memory: %d layers × %d tokens, every hook: cache %.0f MiB of data (file %.0f MiB) = %.2f× the %d MiB limit (prlimit --as); peak RSS %.1f MiB; wall %.1f s\n",
         L, P, b / 1048576, f / 1048576, b / l, l / 1048576, r / 1024, w }'
[ "$bytes" -ge $((3 * limit)) ] || { echo "FAIL: the cache ($bytes B of data) is not ≥ 3× the limit ($limit B)"; exit 1; }
[ "$peak_kib" -lt $((limit_mib * 1024)) ] || { echo "FAIL: peak RSS $peak_kib KiB ≥ the limit"; exit 1; }

# Reference: layer 0's pattern and the logits from a run that caches only those (no limit). Layer 0 is bit-equal;
# later layers may differ in the last bits: their patterns are hooked in the streamed run, which takes the
# explicit attention path (the whole [query, key] map at once), where the reference's unhooked layers take the
# chunked one (row tiles: other GEMM shapes, other rounding). So the logits are compared to 1e-3.
"$cli" run --model "$tmp/deep" --token-ids "$tmp/ids.json" --hooks "blocks.0.attn.hook_pattern" --cache "$tmp/ref.h5" \
  >/dev/null 2>&1 || { echo "FAIL: reference run"; exit 1; }
$py - "$tmp/all.h5" "$tmp/ref.h5" "$layers" <<'PY' || { echo "FAIL: content check"; exit 1; }
import sys, h5py, numpy as np
a, r, L = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r"), int(sys.argv[3])
acts = a["activations"]
per_layer = [k for k in acts if k.startswith("blocks.0.")]
assert len([k for k in acts if k.startswith("blocks.")]) == L * len(per_layer), (len(acts), L, len(per_layer))
first = "blocks.0.attn.hook_pattern"
assert np.array_equal(acts[first][0, 3], r["activations"][first][0, 3]), "streamed layer-0 pattern differs from the reference"
head = acts[f"blocks.{L - 1}.attn.hook_pattern"][0, 3]  # one head of the last layer: [query, key]
assert np.allclose(head.sum(-1), 1, atol=1e-5), "rows do not sum to 1"
assert np.all(np.triu(head, 1) == 0), "not causal"
la, lr = a["logits"][0, -8:], r["logits"][0, -8:]
assert np.allclose(la, lr, rtol=1e-3, atol=1e-3), float(np.abs(la - lr).max())
print(f"content ok: {len(per_layer)} hooks per layer; layer-0 pattern bit-equal to the reference run; "
      f"last-layer pattern causal and row-stochastic; logits within {float(np.abs(la - lr).max()):.2e}")
PY
echo "cli stream_memory OK"
