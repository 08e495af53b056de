"""Reference port: constraint attention (Li et al. 2025, arXiv 2505.11423, "Constraint-Aware
Attention Analysis", Eqs. 1-2; no official code was published).

For a prompt x_{1:T0} and a response y_{1:T}, at generation step t the query is the most recent token
(the last prompt token for t = 1) attending over prompt + earlier response. Offline and equivalently,
one teacher-forced forward over prompt + response: the query row of the step that emits token p is
row p − 1.

  a^{(l,i)}   = (1/H) Σ_h A[l,h,i,:]                          (head-averaged row; GQA: per query head)
  α(l,i)      = (1/|C|) Σ_{j∈C} a^{(l,i)}_j                    (mean over constraint tokens C)
  ᾱ(i)        = (1/L) Σ_l α(l,i)
  β(l)        = mean of α(l,i) over the answer steps' rows i ∈ {p − 1 : p an answer token}
  alpha_sum   = Σ_{j∈C} a^{(l,i)}_j                           (the total mass, which the paper also logs)

Computed for every query row i (the C++ reports α for every row, not only generation steps).

Sequences (token ids of the models' reference.safetensors):
* llama2-niah, mistral-sw: each row; C = the needle's tokens [needle_start, needle_end) of reference.json;
  answer tokens = [answer_start, answer_start + |answer_ids|) (the answer and its newline).
* gpt2-ioi: row 1 (IOI) with its answer id appended as the response; C = the prompt positions that hold
  the answer (indirect-object) token id; answer token = the appended one.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def sequences(model_dir):
    rows = common.reference_rows(model_dir)
    meta = common.reference_meta(model_dir)["rows"]
    out = []
    if "needle_start" in meta[0]:
        for ids, m in zip(rows, meta):
            a0 = m["answer_start"]
            assert ids[a0 : a0 + len(m["answer_ids"])] == m["answer_ids"], "answer ids do not match the reference row"
            out.append({"ids": ids, "constraint": list(range(m["needle_start"], m["needle_end"])),
                        "answer_tokens": list(range(a0, a0 + len(m["answer_ids"])))})
    else:
        ids = rows[1] + [meta[1]["answer_id"]]
        c = [j for j, x in enumerate(rows[1]) if x == meta[1]["answer_id"]]
        out.append({"ids": ids, "constraint": c, "answer_tokens": [len(ids) - 1]})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.common_arguments(ap)
    a = ap.parse_args()
    common.set_backend(not a.no_transformers)
    L, H = common.n_layers_heads(common.load_config(a.model))
    res_seq = []
    for s in sequences(a.model):
        att = common.forward(a.model, s["ids"])["attentions"].double()  # [L, H, n, n]
        C = sorted(set(s["constraint"]))
        rows = [p - 1 for p in s["answer_tokens"]]
        head_avg = att.mean(1)  # [L, n, n]
        mass = head_avg[:, :, C].sum(-1)  # [L, n]
        alpha = mass / len(C)
        beta = alpha[:, rows].mean(-1)
        res_seq.append({
            "ids": s["ids"], "constraint_positions": C, "answer_tokens": s["answer_tokens"], "answer_rows": rows,
            "alpha": alpha.tolist(), "alpha_mean": alpha.mean(0).tolist(), "beta": beta.tolist(),
            "alpha_sum": mass.tolist(),
        })
        print(f"constraint {os.path.basename(a.model.rstrip('/'))}: n={len(s['ids'])} |C|={len(C)} rows={rows} beta={[round(x, 5) for x in beta.tolist()]}")
    common.write_json(a.out, {
        "analysis": "constraint_attention",
        "provenance": common.provenance(a.model, {}),
        "n_layers": L, "n_heads": H,
        "sequences": res_seq,
    })


if __name__ == "__main__":
    main()
