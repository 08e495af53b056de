"""Reference port: the logit lens (nostalgebraist 2020; TransformerLens accumulated_resid + apply_ln_to_stack).

The residual stream before block 0 (the embeddings) and after every block, through the model's final norm
(computed afresh on each residual, LayerNorm or RMSNorm) and the unembedding. Row r = 0 is the embeddings,
row r = l + 1 the residual after block l; the last row is the model's own logits. For each row and position:
the top-k tokens and probabilities (softmax in fp64 of the fp32 logits), the probability and 1-based rank
(1 + the number of strictly larger logits) of the prompt's next token and of chosen target ids, and for
every rank the smallest logit gap to another token (so a test can tell a rank flipped by fp32 rounding
from a wrong one).

Independent of mechscope: the forward is common.forward (transformers when installed, else the pure-PyTorch
port that equals it to 1.2e-5 on these models, check_fallback.py). Inputs: the first row of the model's
reference.safetensors, every position.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def final_norm(cfg: dict, w: dict, x: torch.Tensor) -> torch.Tensor:
    if cfg["model_type"] == "gpt2":
        return torch.nn.functional.layer_norm(x, (x.shape[-1],), w["transformer.ln_f.weight"], w["transformer.ln_f.bias"],
                                              cfg["layer_norm_epsilon"])
    return common._rms(x, w["model.norm.weight"], cfg["rms_norm_eps"])


def unembedding(cfg: dict, w: dict) -> torch.Tensor:
    emb = "transformer.wte.weight" if cfg["model_type"] == "gpt2" else "model.embed_tokens.weight"
    return w.get("lm_head.weight", w[emb])  # [V, d]


def rank_and_gap(logits: torch.Tensor, t: int):
    """1-based rank of token t in logits [V] and the smallest |logit_j - logit_t| over j != t."""
    lt = logits[t]
    rank = int((logits > lt).sum()) + 1
    gaps = (logits - lt).abs()
    gaps[t] = float("inf")
    return rank, float(gaps.min())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.common_arguments(ap)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--targets", default="", help="token ids to track, e.g. 11,262")
    a = ap.parse_args()
    common.set_backend(not a.no_transformers)
    cfg = common.load_config(a.model)
    w = {k: v.float() for k, v in common._weights(os.path.abspath(a.model)).items()}
    ids = common.reference_rows(a.model)[0]
    out = common.forward(a.model, ids)
    hs = out["hidden_states"]  # [L+1, n, d]; hs[-1] is after the final norm (HF convention)
    L, n = hs.shape[0] - 1, len(ids)
    W_U = unembedding(cfg, w)
    rows = [final_norm(cfg, w, hs[r]) @ W_U.T for r in range(L)] + [out["logits"]]  # each [n, V] fp32
    targets = [int(t) for t in a.targets.split(",") if t.strip()]
    res = {k: [] for k in ("top_ids", "top_probs", "next_token_prob", "next_token_rank", "next_token_gap", "target_prob", "target_rank", "target_gap")}
    for logits in rows:
        logp = torch.log_softmax(logits.double(), dim=-1)
        top = logp.topk(a.top_k + 1, dim=-1)  # one extra: the margin below the k-th
        res["top_ids"].append(top.indices[:, : a.top_k].tolist())
        res["top_probs"].append(top.values.exp().tolist())
        nxt_p, nxt_r, nxt_g, tp, tr, tg = [], [], [], [], [], []
        for q in range(n):
            if q + 1 < n:
                r, g = rank_and_gap(logits[q], ids[q + 1])
                nxt_p.append(float(logp[q, ids[q + 1]].exp()))
                nxt_r.append(r)
                nxt_g.append(g)
            else:
                nxt_p.append(None)
                nxt_r.append(0)
                nxt_g.append(None)
            rg = [rank_and_gap(logits[q], t) for t in targets]
            tp.append([float(logp[q, t].exp()) for t in targets])
            tr.append([x[0] for x in rg])
            tg.append([x[1] for x in rg])
        res["next_token_prob"].append(nxt_p)
        res["next_token_rank"].append(nxt_r)
        res["next_token_gap"].append(nxt_g)
        res["target_prob"].append(tp)
        res["target_rank"].append(tr)
        res["target_gap"].append(tg)
    common.write_json(a.out, {"analysis": "logit-lens", "ids": ids, "top_k": a.top_k, "target_ids": targets, **res,
                              "provenance": common.provenance(a.model, {"top_k": a.top_k, "targets": targets, "positions": "all"})})


if __name__ == "__main__":
    main()
