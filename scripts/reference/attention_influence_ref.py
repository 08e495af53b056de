"""Reference port: AttentionInfluence (Hua et al. 2025, arXiv 2505.07293).

A head set (in the paper, the model's retrieval heads) is masked by giving each head uniform causal
attention over the keys it may see (within a sliding window when the model has one). For a sequence
x_1..x_n the token loss is l_t = -log p(x_{t+1} | x_{<=t}), t = 1..n-1; L is the mean token loss, and the
score is (L_masked - L_base) / L_base.

Runs on the pure-PyTorch back end (common.py --no-transformers, whose forward equals transformers' to
1.2e-5 on these models, check_fallback.py), because masking a head inside transformers' eager attention
needs a patched module. Inputs: every row of the model's reference.safetensors; heads from --heads
("L.H,L.H").
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def token_losses(logits: torch.Tensor, ids: list) -> list:
    logp = torch.log_softmax(logits[:-1].double(), dim=-1)  # [n-1, vocab]
    nxt = torch.tensor(ids[1:]).unsqueeze(1)
    return (-logp.gather(1, nxt).squeeze(1)).tolist()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.common_arguments(ap)
    ap.add_argument("--heads", required=True, help="heads to mask, L.H,L.H")
    a = ap.parse_args()
    common.set_backend(False)  # head masking lives in the pure-PyTorch forward
    heads = [tuple(int(x) for x in h.split(".")) for h in a.heads.split(",")]
    rows = []
    for ids in common.reference_rows(a.model):
        base = token_losses(common.forward(a.model, ids)["logits"], ids)
        masked = token_losses(common.forward(a.model, ids, frozenset(heads))["logits"], ids)
        lb, lm = sum(base) / len(base), sum(masked) / len(masked)
        rows.append({"ids": ids, "token_loss_base": base, "token_loss_masked": masked, "loss_base": lb,
                     "loss_masked": lm, "score": (lm - lb) / lb})
    common.write_json(a.out, {"analysis": "attention-influence", "method": "uniform",
                              "heads": [f"{l}.{h}" for l, h in heads], "rows": rows,
                              "provenance": common.provenance(a.model, {"heads": a.heads})})


if __name__ == "__main__":
    main()
