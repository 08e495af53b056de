"""Reference port: primary and secondary attention sinks (Wong et al. 2025, arXiv 2512.22213).

Protocol of the official code (JeffreyWong20/Secondary-Attention-Sinks @11eefcc,
src/hidden_state_base.py: hidden_state_norm_detection, sink_labeling_machine; src/attn_base.py for
the attention columns), re-implemented here from its description, not copied:

1. h_l = HF ``hidden_states[1:]`` (L entries, the last one after the final norm).
2. Primary sink b: among the candidate positions, the one whose ℓ2 norm of h_l[p], averaged over the
   L layers, is largest (first on ties, as torch.argmax). Candidates {0, 1, 2} (the official code's
   chat-template setting; {0, 1} without one) — the default of mechscope.
3. Clipper window: n_l = ‖h_l[b]‖, Δ_l = n_{l+1} − n_l, l_start = argmax Δ + 1,
   l_end = argmin Δ[l_start:] + l_start + 1.
4. For l in [l_start, l_end) and p > b: record l for p when |cos(h_l[p], h_l[b])| > 0.9.
5. lifetime = number of recorded layers, creation layer = the first; label bos_sink if lifetime ≥ L − 15,
   secondary if 4 < lifetime < L − 15, else noise.
6. MLP alignment at the creation layer l*: cos(m_{l*}[p], m_{l*}[b]) and ‖m_{l*}[p]‖ (src/mlp_base.py).
7. Sink score (Gu et al. 2024; the official notebook 05.sink_score.ipynb is not in the repository, its
   inputs are the attention columns [head, query] stored by src/attn_base.py): per layer and head,
   mean over queries i > j of A[l,h,i,j]; sink rate = fraction of heads with score > ε = 0.3. Each
   recorded position p gets its own score on its column and the layers where some head's score > ε.

Besides the numbers the C++ must equal, each row carries ``margins`` (how far the decisive quantities
are from their thresholds/ties), so a comparison can tell a real disagreement from fp rounding, and
``official_sink_map`` (the dict hidden_state_norm_detection + sink_labeling_machine return, the
primary included).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def label(lifetime: int, L: int) -> str:
    if lifetime < L - 15 and lifetime > 4:
        return "secondary"
    if lifetime >= L - 15:
        return "bos_sink"
    return "noise"


def column_scores(att: torch.Tensor, j: int) -> torch.Tensor:
    """[L, H]: mean over queries i > j of A[l,h,i,j] (0 when no query follows j)."""
    n = att.shape[-1]
    if j + 1 >= n:
        return torch.zeros(att.shape[0], att.shape[1], dtype=torch.float64)
    return att[:, :, j + 1 :, j].double().mean(-1)


def sinks_row(model_dir: str, ids: list, batch: int, cand_opt: list, eps: float, cos_thr: float) -> dict:
    out = common.forward(model_dir, ids)
    hs = out["hidden_states"][1:].double()  # [L, n, d]; the last entry after the final norm
    att = out["attentions"]  # [L, H, n, n]
    mlp = out["mlp_out"].double()  # [L, n, d]
    L, n = hs.shape[0], hs.shape[1]

    cands = sorted({p for p in cand_opt if p + 1 < n})
    norms = [hs[:, p].norm(dim=-1).mean().item() for p in cands]
    bi = max(range(len(cands)), key=lambda k: (norms[k], -k))  # largest, first on ties
    b = cands[bi]

    bos_norm = hs[:, b].norm(dim=-1)  # [L]
    delta = bos_norm[1:] - bos_norm[:-1]  # [L-1]
    start = int(torch.argmax(delta).item()) + 1
    if start < delta.numel():
        end = int(torch.argmin(delta[start:]).item()) + start + 1
    else:  # the official code would call argmin on an empty tensor (error); the C++ keeps the stack's end
        end = L
    end = min(end, L)

    score = column_scores(att, b)  # [L, H]
    rate = (score > eps).double().mean(-1)  # [L]

    recorded = {}
    cos_margin = float("inf")
    for l in range(start, end):
        c = torch.nn.functional.cosine_similarity(hs[l, b + 1 :], hs[l, b].unsqueeze(0), dim=-1)  # [n-b-1]
        if c.numel():
            cos_margin = min(cos_margin, (c.abs() - cos_thr).abs().min().item())
        for k in (c.abs() > cos_thr).nonzero().flatten().tolist():
            recorded.setdefault(b + 1 + k, []).append(l)

    sinks = []
    score_margin = (score - eps).abs().min().item()
    for p in sorted(recorded):
        layers = recorded[p]
        ls = layers[0]
        own = column_scores(att, p)
        score_layers = [l for l in range(L) if p + 1 < n and own[l].max().item() > eps]
        if p + 1 < n:
            score_margin = min(score_margin, (own.max(-1).values - eps).abs().min().item())
        sinks.append({
            "batch": batch,
            "position": p,
            "token_id": int(ids[p]),
            "creation_layer": ls,
            "lifetime": len(layers),
            "label": label(len(layers), L),
            "mlp_cosine": torch.nn.functional.cosine_similarity(mlp[ls, p], mlp[ls, b], dim=0).item(),
            "mlp_norm": mlp[ls, p].norm().item(),
            "layers": layers,
            "sink_score": own.tolist(),
            "score_layers": score_layers,
            "score_lifetime": len(score_layers),
        })

    srt = sorted(delta.tolist())
    tail = sorted(delta[start:].tolist()) if start < delta.numel() else []
    sn = sorted(norms, reverse=True)
    margins = {
        "cosine": cos_margin if cos_margin != float("inf") else None,  # min over window layers, p > b of ||cos| − thr|
        "score": score_margin,  # min |score − ε| over the primary's and every sink's per-layer decisions
        "window_argmax_gap": srt[-1] - srt[-2] if len(srt) > 1 else None,  # largest Δ − second largest
        "window_argmin_gap": tail[1] - tail[0] if len(tail) > 1 else None,  # second smallest − smallest Δ after l_start
        "candidate_gap": sn[0] - sn[1] if len(sn) > 1 else None,  # winning mean norm − runner-up
    }
    official = {str(b): {"layer": list(range(start, end)), "token_id": int(ids[b])}}
    for p in sorted(recorded):
        official[str(p)] = {"layer": recorded[p], "token_id": int(ids[p])}
    for info in official.values():
        info["sink_type"] = label(len(info["layer"]), L)
    return {
        "primary": {"batch": batch, "position": b, "detected": True, "candidates": cands, "candidate_norms": norms,
                    "window": [start, end]},
        "sink_score": score.tolist(),
        "sink_rate": rate.tolist(),
        "secondary_sinks": sinks,
        "margins": margins,
        "official_sink_map": official,
        "bos_norm": bos_norm.tolist(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.common_arguments(ap)
    ap.add_argument("--bos-candidates", default="0,1,2")
    ap.add_argument("--sink-threshold", type=float, default=0.3)
    ap.add_argument("--cosine-threshold", type=float, default=0.9)
    a = ap.parse_args()
    common.set_backend(not a.no_transformers)
    cands = [int(x) for x in a.bos_candidates.split(",")]
    rows = common.reference_rows(a.model)
    L, H = common.n_layers_heads(common.load_config(a.model))
    per = [sinks_row(a.model, ids, b, cands, a.sink_threshold, a.cosine_threshold) for b, ids in enumerate(rows)]
    score = torch.tensor([r["sink_score"] for r in per], dtype=torch.float64).mean(0)
    rate = torch.tensor([r["sink_rate"] for r in per], dtype=torch.float64).mean(0)
    levels = {}
    for r in per:
        for s in r["secondary_sinks"]:
            if s["label"] == "secondary":
                levels[(s["creation_layer"], s["lifetime"])] = levels.get((s["creation_layer"], s["lifetime"]), 0) + 1
    res = {
        "analysis": "sinks",
        "provenance": common.provenance(a.model, {"bos_candidates": cands, "sink_threshold": a.sink_threshold,
                                                   "cosine_threshold": a.cosine_threshold, "hidden_states": "hf"}),
        "n_layers": L,
        "n_heads": H,
        "rows": rows,
        "sink_score": score.tolist(),
        "sink_rate": rate.tolist(),
        "primary_sink": [r["primary"] for r in per],
        "secondary_sinks": [s for r in per for s in r["secondary_sinks"]],
        "sink_levels": [{"creation_layer": k[0], "lifetime": k[1], "count": v} for k, v in sorted(levels.items())],
        "per_row": [{k: r[k] for k in ("sink_score", "sink_rate", "margins", "official_sink_map", "bos_norm")} for r in per],
    }
    common.write_json(a.out, res)
    for r in per:
        p = r["primary"]
        print(f"sinks {os.path.basename(a.model.rstrip('/'))} row {p['batch']}: b={p['position']} window={p['window']} "
              f"sinks={[(s['position'], s['creation_layer'], s['lifetime'], s['label']) for s in r['secondary_sinks']]} margins={r['margins']}")


if __name__ == "__main__":
    main()
