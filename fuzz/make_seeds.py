#!/usr/bin/python3
"""Seeds the libFuzzer corpora: OUT/<harness>/ gets the committed seeds (fuzz/seeds/<harness>), the
committed regression inputs (tests/data/fuzz_regressions/<harness>), and small inputs derived from
the fixtures (shared/fixtures, tests/data): real config.json files, tokenizer.json files shrunk to a
few hundred tokens with their real normalizers/pre-tokenizers/decoders, small safetensors files,
a mechscope HDF5 cache (h5py), JSONL datasets. Usage: make_seeds.py OUT SHARED_DIR SOURCE_DIR"""
import json
import os
import shutil
import struct
import sys

out, shared, src = sys.argv[1], sys.argv[2], sys.argv[3]
fixtures = os.path.join(shared, "fixtures")
HARNESSES = ["safetensors", "config", "tokenizer_json", "tokenizer_encode", "hdf5_cache", "jsonl_dataset", "batch_plan"]


def put(harness, name, data):
    d = os.path.join(out, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def copy_tree(harness, folder):
    if os.path.isdir(folder):
        for root, _, files in os.walk(folder):
            for fn in files:
                shutil.copy(os.path.join(root, fn), os.path.join(out, harness, os.path.basename(root) + "_" + fn))


for h in HARNESSES:
    os.makedirs(os.path.join(out, h), exist_ok=True)
    copy_tree(h, os.path.join(src, "fuzz", "seeds", h))
    copy_tree(h, os.path.join(src, "tests", "data", "fuzz_regressions", h))

# ---- config.json: every fixture family ----------------------------------------------------------
models = os.path.join(fixtures, "models")
if os.path.isdir(models):
    for fam in sorted(os.listdir(models)):
        p = os.path.join(models, fam, "config.json")
        if os.path.exists(p):
            put("config", fam + ".json", open(p, "rb").read())


# ---- safetensors: small files of every dtype, and fixture headers with their data cut short ---------
def safetensors(entries, metadata=None, pad=True):
    header, data, off = {}, b"", 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, size in entries:
        n = 1
        for s in shape:
            n *= s
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n * size]}
        data += bytes((i * 37) % 251 for i in range(n * size))
        off += n * size
    h = json.dumps(header).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I8": 1, "U8": 1, "BOOL": 1}
put("safetensors", "dtypes.safetensors", safetensors([(f"t.{d}", d, [2, 3], s) for d, s in sizes.items()], {"format": "pt"}))
put("safetensors", "scalar_empty.safetensors", safetensors([("s", "F32", [], 4), ("e", "F16", [0, 4], 2)]))
put("safetensors", "unpadded.safetensors", safetensors([("a", "BF16", [3], 2), ("b", "F32", [5], 4)], pad=False))
for fam in ("gpt2", "llama"):
    p = os.path.join(models, fam, "model.safetensors")
    if os.path.exists(p):
        raw = open(p, "rb").read()
        (n,) = struct.unpack("<Q", raw[:8])
        head = json.loads(raw[8 : 8 + n])
        # Same names and dtypes, shapes shrunk so the file stays small.
        ents = [(k, v["dtype"], [min(s, 2) for s in v["shape"]], sizes[v["dtype"]]) for k, v in head.items() if k != "__metadata__"]
        put("safetensors", fam + "_shrunk.safetensors", safetensors(ents[:24], head.get("__metadata__")))
planted = os.path.join(src, "tests", "data", "planted", "planted_hf_reference.safetensors")
if os.path.exists(planted):
    put("safetensors", "planted.safetensors", open(planted, "rb").read())

# ---- tokenizer.json: real component stacks over a shrunk vocabulary; texts for encode --------------
toks = os.path.join(fixtures, "tokenizers")
if os.path.isdir(toks):
    for name in sorted(os.listdir(toks)):
        p = os.path.join(toks, name, "tokenizer.json")
        if not os.path.exists(p):
            continue
        t = json.load(open(p, encoding="utf-8"))
        m = t["model"]
        vocab = dict(list(m.get("vocab", {}).items())[:300])
        merges = []
        for mg in m.get("merges", [])[:2000]:
            a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
            if a in vocab and b in vocab and a + b in vocab:
                merges.append(mg)
        m = dict(m, vocab=vocab, merges=merges)
        t["model"] = m
        t["added_tokens"] = t.get("added_tokens", [])[:8]
        put("tokenizer_json", name + ".json", json.dumps(t, ensure_ascii=False) + "\0Hello world, it's 2024!  ok\n\u00e9t\u00e9")
    texts = os.path.join(toks, "texts.json")
    if os.path.exists(texts):
        data = json.load(open(texts, encoding="utf-8"))
        items = data if isinstance(data, list) else [v for vs in data.values() for v in (vs if isinstance(vs, list) else [vs])]
        for i, x in enumerate(items[:64]):
            if isinstance(x, str):
                put("tokenizer_encode", f"text{i:02d}.txt", x.encode("utf-8", "surrogatepass"))
put("tokenizer_encode", "invalid_utf8.bin", b"ab\xff\xfe\xc3(\xe2\x82 <s> </s>\x00\xf0\x9f\x98\x80")

# ---- JSONL datasets -------------------------------------------------------------------------------
put("jsonl_dataset", "texts.jsonl", '{"clean": "ab a", "corrupted": "ab b", "answer": " a", "incorrect": "b", "template": 1}\n'
    '{"clean": "a b", "corrupted": "b a", "answer": "a", "incorrect": "b"}\n')
put("jsonl_dataset", "ids.jsonl", '{"clean_ids": [4, 0, 1], "corrupted_ids": [4, 1, 0], "answer": 0, "incorrect": 1}\n\n'
    '{"clean_ids": [4, 2], "corrupted_ids": [4, 3], "answer": "a", "incorrect_id": 1, "incorrect": 3}\n')

# ---- HDF5 cache (h5py) -----------------------------------------------------------------------------
try:
    import h5py
    import numpy as np

    path = os.path.join(out, "hdf5_cache", "mini_cache.h5")
    with h5py.File(path, "w", libver="earliest") as f:
        f.attrs["schema_version"] = np.int64(1)
        f.attrs["mechscope_complete"] = np.int64(1)
        f.attrs["family"] = "gpt2"
        f.attrs["dtype"] = "float32"
        f["tokens"] = np.array([[1, 2, 3]], dtype=np.int64)
        f.create_dataset("token_strings", data=np.array([["a", "b", "c"]], dtype=object), dtype=h5py.string_dtype())
        a = f.create_group("activations")
        d = a.create_dataset("blocks.0.attn.hook_pattern", data=np.random.RandomState(0).rand(1, 2, 3, 3).astype(np.float32),
                             chunks=(1, 1, 3, 3), compression="gzip", shuffle=True)
        d.attrs["axes"] = "batch,head,query,key"
        d.attrs["hook_name"] = "blocks.0.attn.hook_pattern"
        a.create_dataset("blocks.0.hook_resid_pre", data=np.ones((1, 3, 4), dtype=np.float16))
        b = a.create_dataset("blocks.0.hook_resid_post", data=np.ones((1, 3, 4), dtype=np.uint16))
        b.attrs["mechscope_dtype"] = "bfloat16"
        f["logits"] = np.zeros((1, 3, 5), dtype=np.float32)
        f.create_dataset("analyses/sinks/json", data='{"x": 1}', dtype=h5py.string_dtype())
except ImportError:
    print("make_seeds: h5py missing, no HDF5 seed (/usr/bin/python3 -m pip? Debian: python3-h5py)")

# ---- batch plans: the TOML examples of docs/batch.md ------------------------------------------------
import re

batch_doc = os.path.join(src, "docs", "batch.md")
if os.path.exists(batch_doc):
    for i, block in enumerate(re.findall(r"```toml\n(.*?)```", open(batch_doc, encoding="utf-8").read(), re.S)):
        put("batch_plan", f"doc{i}.toml", block)

for h in HARNESSES:
    print(f"{h}: {len(os.listdir(os.path.join(out, h)))} seeds")
