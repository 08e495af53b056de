"""Reference port: OV copy scores and the QK look-up of every head, from the weights (issue #22).

Definitions (docs/metrics.md, "OV and QK circuits"):
* OV circuit of head (l, h) over the token set T (Elhage et al. 2021; TransformerLens' processed weights:
  fold_ln, center_writing_weights, center_unembed): row t = W_E[t] . ln1 . W_V^h W_O^h . ln_f . W_U, where a
  norm here is its weight only (scale ignored, biases dropped) and, for LayerNorm, the centring projection
  x - mean(x) on both sides; W_U is centred over the vocabulary for the T x T matrix.
  - eigen score: sum(lambda) / sum(|lambda|) over the eigenvalues of the T x T matrix (all |T| of them,
    computed here on the full matrix, not factored); over the whole vocabulary: the eigenvalues of
    B_V . A_V [d_head, d_head] (A_V = the folded W_E . W_V^h for every token, B_V = W_O^h . W_U centred),
    associated in the other order than mechscope's W_U^T W_E core;
  - top-k: rank of t in its own row over the whole vocabulary (1 + #strictly larger), hit when <= k; the
    negative score ranks -row. Per token: the margin own - (k-th largest other entry) of both, and the
    row's absolute scale max_j sum_i |o_i| |W_U[j, i]| from which the test derives its fp32 bound.
* QK look-up: x = W_E[token] (+ W_pos[position] for GPT-2 when asked), x^ = ln1(x) with its scale, weight
  and bias, q = x^ W_Q^h + b_Q^h, k = x^ W_K^{kv(h)} + b_K^{kv(h)}, score q . k / sqrt(d_head); no rotary.

Independent of mechscope: reads model.safetensors itself (common.read_safetensors), the Hugging Face
tensor names and layouts (GPT-2 Conv1D [in, out], c_attn = [q | k | v]; Llama q/k/v/o_proj [out, in], GQA by
repeat_interleave of the K/V heads as transformers' repeat_kv), fp64 on the CPU. T = the distinct tokens of
the first reference prompt in order of first occurrence; the look-up: the first 5 of T against the first 7.
"""
import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def heads_of(cfg, w, l):
    """Per-head weights of layer l in x @ W form (fp64): wq/wk/wv [H, d, dh], bq/bk [H, dh] or None, wo [H, dh, d],
    ln1 (weight, bias or None), with K/V repeated to the query heads."""
    if cfg["model_type"] == "gpt2":
        d, H = cfg["n_embd"], cfg["n_head"]
        dh = d // H
        p = f"transformer.h.{l}."
        ca, cb = w[p + "attn.c_attn.weight"], w[p + "attn.c_attn.bias"]  # [d, 3d], [3d]
        split = lambda m, i: m[..., i * d:(i + 1) * d]
        per = lambda m: m.reshape(d, H, dh).permute(1, 0, 2)  # [H, d, dh]
        wq, wk, wv = (per(split(ca, i)) for i in range(3))
        bq, bk = (split(cb, i).reshape(H, dh) for i in range(2))
        wo = w[p + "attn.c_proj.weight"].reshape(H, dh, d)  # rows of c_proj are z = concat of heads
        return dict(wq=wq, wk=wk, wv=wv, bq=bq, bk=bk, wo=wo, ln1=(w[p + "ln_1.weight"], w[p + "ln_1.bias"]), dh=dh)
    d, H = cfg["hidden_size"], cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads", H)
    dh = cfg.get("head_dim") or d // H
    p = f"model.layers.{l}."
    proj = lambda name, n: w[p + f"self_attn.{name}.weight"].reshape(n, dh, d).transpose(1, 2)  # [n, d, dh]
    rep = lambda t: t.repeat_interleave(H // KV, dim=0)
    bias = lambda name, n: w[p + f"self_attn.{name}.bias"].reshape(n, dh) if p + f"self_attn.{name}.bias" in w else None
    bk = bias("k_proj", KV)
    wo = w[p + "self_attn.o_proj.weight"].reshape(d, H, dh).permute(1, 2, 0)  # [H, dh, d]
    return dict(wq=proj("q_proj", H), wk=rep(proj("k_proj", KV)), wv=rep(proj("v_proj", KV)), bq=bias("q_proj", H),
                bk=None if bk is None else rep(bk), wo=wo, ln1=(w[p + "input_layernorm.weight"], None), dh=dh)


def model_parts(cfg, w):
    if cfg["model_type"] == "gpt2":
        return dict(we=w["transformer.wte.weight"], wpos=w["transformer.wpe.weight"], lnf=w["transformer.ln_f.weight"],
                    wu=w.get("lm_head.weight", w["transformer.wte.weight"]), layernorm=True, eps=cfg["layer_norm_epsilon"],
                    L=cfg["n_layer"], H=cfg["n_head"])
    return dict(we=w["model.embed_tokens.weight"], wpos=None, lnf=w["model.norm.weight"],
                wu=w.get("lm_head.weight", w["model.embed_tokens.weight"]), layernorm=False, eps=cfg["rms_norm_eps"],
                L=cfg["num_hidden_layers"], H=cfg["num_attention_heads"])


def centre(x, on):
    return x - x.mean(-1, keepdim=True) if on else x


def norm_full(m, x, weight, bias):
    """ln1 with its scale; also the absolute chain (|x| + |mean|) / sigma * |w| + |b| for the error bound."""
    mu = x.mean(-1, keepdim=True) if m["layernorm"] else torch.zeros_like(x[..., :1])
    xc = x - mu
    inv = torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + m["eps"])
    y = xc * inv * weight + (bias if bias is not None else 0)
    y_abs = (x.abs() + mu.abs()) * inv * weight.abs() + (bias.abs() if bias is not None else 0)
    return y, y_abs


def margin_and_rank(row, t, k):
    own = row[t]
    others = torch.cat([row[:t], row[t + 1:]])
    kth = others.topk(k).values[-1]
    return float(own - kth), int((row > own).sum()) + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--position", type=int, default=3, help="GPT-2: the position of the second QK look-up")
    a = ap.parse_args()
    cfg = common.load_config(a.model)
    w = {k: v.double() for k, v in common.read_safetensors(os.path.join(a.model, "model.safetensors")).items()}
    m = model_parts(cfg, w)
    row0 = common.reference_rows(a.model)[0]
    T = list(dict.fromkeys(row0))
    Q, K = T[:5], T[:7]
    k = a.top_k
    wu, ln_on = m["wu"], m["layernorm"]
    wu_c = wu - wu.mean(0)  # center_unembed
    res = {key: [] for key in ("ov_copy_eigen", "ov_copy_topk", "ov_copy_topk_negative", "ov_rank", "ov_rank_negative",
                               "ov_margin", "ov_margin_negative", "ov_row_scale", "eig_cond", "eig_abs_norm", "eig_sum_abs",
                               "qk", "qk_abs_scale", "qk_position", "qk_position_abs_scale", "ov_copy_eigen_vocab",
                               "eig_vocab_cond", "eig_vocab_abs_norm", "eig_vocab_sum_abs")}
    E = centre(m["we"][T], ln_on)  # [T, d]
    E_all = centre(m["we"], ln_on)  # [V, d]
    for l in range(m["L"]):
        hw = heads_of(cfg, w, l)
        ln1w, ln1b = hw["ln1"]
        row = {key: [] for key in res}
        for h in range(m["H"]):
            A = (E * ln1w) @ hw["wv"][h]  # [T, dh]
            Bd = centre(hw["wo"][h], ln_on) * m["lnf"]  # [dh, d]
            o = A @ Bd  # [T, d] the folded output of each token
            logits = o @ wu.T  # [T, V]
            mtt = (o @ wu_c.T)[:, T]  # [T, T] the OV circuit over T (centred unembedding)
            lam, vec = torch.linalg.eig(mtt)
            row["ov_copy_eigen"].append(float(lam.real.sum() / lam.abs().sum()))
            Bm = Bd @ wu_c[T].T  # [dh, T]
            conds = [float(torch.linalg.cond(vec))]
            conds.append(float(torch.linalg.cond(torch.linalg.eig(Bm @ A)[1])))
            row["eig_cond"].append(max(conds))
            row["eig_abs_norm"].append(float((A.abs() @ Bm.abs()).norm()))
            row["eig_sum_abs"].append(float(lam.abs().sum()))
            # The whole vocabulary: A_V [V, dh] . B_V [dh, V] has the nonzero eigenvalues of B_V . A_V [dh, dh].
            A_V, B_V = (E_all * ln1w) @ hw["wv"][h], Bd @ wu_c.T
            lam_v, vec_v = torch.linalg.eig(B_V @ A_V)
            row["ov_copy_eigen_vocab"].append(float(lam_v.real.sum() / lam_v.abs().sum()))
            row["eig_vocab_cond"].append(float(torch.linalg.cond(vec_v)))
            row["eig_vocab_abs_norm"].append(float((B_V.abs() @ A_V.abs()).norm()))
            row["eig_vocab_sum_abs"].append(float(lam_v.abs().sum()))
            mr = [margin_and_rank(logits[i], t, k) for i, t in enumerate(T)]
            mn = [margin_and_rank(-logits[i], t, k) for i, t in enumerate(T)]
            row["ov_rank"].append([r for _, r in mr])
            row["ov_rank_negative"].append([r for _, r in mn])
            row["ov_margin"].append([g for g, _ in mr])
            row["ov_margin_negative"].append([g for g, _ in mn])
            row["ov_copy_topk"].append(sum(r <= k for _, r in mr) / len(T))
            row["ov_copy_topk_negative"].append(sum(r <= k for _, r in mn) / len(T))
            row["ov_row_scale"].append((o.abs() @ wu.abs().T).max(-1).values.tolist())
            for key, pos in (("qk", None), ("qk_position", a.position)):
                if pos is not None and m["wpos"] is None:
                    continue
                xq, xk = m["we"][Q], m["we"][K]
                if pos is not None:
                    xq, xk = xq + m["wpos"][pos], xk + m["wpos"][pos]
                (nq, nq_abs), (nk, nk_abs) = norm_full(m, xq, ln1w, ln1b), norm_full(m, xk, ln1w, ln1b)
                q, q_abs = nq @ hw["wq"][h], nq_abs @ hw["wq"][h].abs()
                kk, k_abs = nk @ hw["wk"][h], nk_abs @ hw["wk"][h].abs()
                if hw["bq"] is not None:
                    q, q_abs = q + hw["bq"][h], q_abs + hw["bq"][h].abs()
                if hw["bk"] is not None:
                    kk, k_abs = kk + hw["bk"][h], k_abs + hw["bk"][h].abs()
                s = 1.0 / math.sqrt(hw["dh"])
                row[key].append((q @ kk.T * s).tolist())
                row[key + "_abs_scale"].append(float((q_abs @ k_abs.T * s).max()))
        for key in res:
            res[key].append(row[key])
    if m["wpos"] is None:
        del res["qk_position"], res["qk_position_abs_scale"]
    common.write_json(a.out, {"analysis": "ov-qk", "tokens": T, "top_k": k, "query_tokens": Q, "key_tokens": K,
                              "position": a.position if m["wpos"] is not None else None, **res,
                              "provenance": {"model": os.path.relpath(os.path.abspath(a.model), os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))),
                                             "precision": "fp64 from the bf16 weights, CPU, torch " + torch.__version__,
                                             "settings": {"top_k": k, "tokens": "distinct ids of reference row 0", "position": a.position}}})


if __name__ == "__main__":
    main()
