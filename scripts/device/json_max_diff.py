"""The largest relative difference between two analysis JSON files (every float both hold at the same path, the
provenance and timing blocks left out): `json_max_diff.py A B LABEL` prints one summary line."""
import json
import sys


def walk(x, y, path, worst):
    if isinstance(x, dict):
        for k in x:
            if k not in ("provenance", "timing") and isinstance(y, dict) and k in y:
                walk(x[k], y[k], path + "." + k, worst)
    elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y)):
            walk(u, v, f"{path}[{i}]", worst)
    elif isinstance(x, float) and isinstance(y, float):
        d = abs(x - y) / max(1e-6, abs(x))
        if d > worst[0]:
            worst[:] = [d, path, x, y]


def main():
    a, b = (json.load(open(p)) for p in sys.argv[1:3])
    worst = [0.0, "", 0.0, 0.0]
    walk(a, b, "", worst)
    # The values themselves too: a relative difference at a value ≈ 0 (under the 1e-6 floor) is an absolute one.
    print(f"  {sys.argv[3]}: largest relative difference {worst[0]:.3g} at {worst[1]} ({worst[2]:.9g} vs {worst[3]:.9g})")


if __name__ == "__main__":
    main()
