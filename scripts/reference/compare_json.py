"""Largest absolute difference between the numbers of two reference JSON trees (provenance ignored);
structure, integers, strings and booleans must be equal. Used by run_all.sh to check that the
--no-transformers fallback gives the transformers reference's numbers."""
import json
import sys


def walk(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            out["struct"].append(f"{path}: keys {sorted(set(a) ^ set(b))}")
        for k in a:
            if k != "provenance" and k in b:
                walk(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out["struct"].append(f"{path}: length {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{i}]", out)
    elif isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            d = abs(a - b)
            if d > out["max"]:
                out["max"], out["where"] = d, path
        else:
            out["struct"].append(f"{path}: {a!r} vs {b!r}")
    elif a != b:
        out["struct"].append(f"{path}: {a!r} vs {b!r}")


bad = False
for fa, fb in zip(sys.argv[1::2], sys.argv[2::2]):
    out = {"max": 0.0, "where": "", "struct": []}
    walk(json.load(open(fa)), json.load(open(fb)), "", out)
    ok = not out["struct"] and out["max"] <= 1e-4
    bad |= not ok
    print(f"{fa} vs {fb}: max|diff| {out['max']:.3g} at {out['where']}; {len(out['struct'])} structural differences {out['struct'][:5]} {'ok' if ok else 'DIFFER'}")
sys.exit(1 if bad else 0)
