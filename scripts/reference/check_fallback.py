"""Checks a back end's forward against the transformers tensors in reference.safetensors
(made by scripts/train with transformers' eager attention): hidden states, attention probabilities
and last logits of both rows, at their real lengths. Exit 1 when an error exceeds the tolerance
(attention 1e-4 absolute; hidden states and logits 1e-4 or 3e-6 of the largest |value|, as
tests/engine/trained_parity_test.cpp)."""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("models", nargs="+")
ap.add_argument("--no-transformers", action="store_true")
a = ap.parse_args()
common.set_backend(not a.no_transformers)
print("backend:", common.backend_name())
bad = False
for m in a.models:
    ref = common.read_safetensors(os.path.join(m, "reference.safetensors"))
    for b in range(ref["input_ids"].shape[0]):
        n = int(ref["lengths"][b])
        out = common.forward(m, ref["input_ids"][b, :n].tolist())
        hs = ref["hidden_states"][:, b, :n]
        at = ref["attentions"][:, b, :, :n, :n]
        eh = (out["hidden_states"] - hs).abs().max().item()
        ea = (out["attentions"] - at).abs().max().item()
        el = (out["logits"][n - 1] - ref["last_logits"][b]).abs().max().item()
        th = max(1e-4, 3e-6 * hs.abs().max().item())
        tl = max(1e-4, 3e-6 * ref["last_logits"][b].abs().max().item())
        ok = eh <= th and ea <= 1e-4 and el <= tl
        bad |= not ok
        print(f"{os.path.basename(m.rstrip('/')):12s} row {b} n={n:3d}  max|err| hidden {eh:.3g} (tol {th:.2g})  attention {ea:.3g} (tol 1e-4)  last logits {el:.3g} (tol {tl:.2g})  {'ok' if ok else 'FAIL'}")
sys.exit(1 if bad else 0)
