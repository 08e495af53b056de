"""Reference port: edge attribution patching, EAP (Syed et al. 2023, arXiv 2310.10348) and EAP-IG with
interpolated input embeddings (Hanna et al. 2024, "Have Faith in Faithfulness", arXiv 2403.17806), issue #22.

Written from the papers and the algorithm of the official code (read, not copied): hannamw/EAP-IG @795f560
(src/eap/graph.py node/edge layout, src/eap/utils.py make_hooks_and_matrices, src/eap/attribute.py
get_scores_eap / get_scores_eap_ig). No mechscope code is imported. Runs on hooked_gpt2.py's weights with
its own forward here, written the way TransformerLens runs it with split q/k/v inputs and a hooked MLP
input: every head's q, k and v read their own copy of resid_pre (ln1 applied per copy), the MLP its own
copy of resid_mid, the logits the final residual; the gradient of the logit difference is read at those
copies directly (retain_grad), the way the EAP-IG code's backward hooks read hook_{q,k,v}_input,
hook_mlp_in and the last hook_resid_post.

Graph (MIB / EAP-IG layout): forward (sources) input, a{l}.h{h}, m{l}: 1 + L(H+1); backward (receivers)
per layer q of each head, k of each head, v of each head, m{l}; then logits: L(3H+1) + 1. A receiver of
layer l reads the sources before index 1 + l(H+1) (heads) or 1 + l(H+1) + H (the MLP reads its own
block's heads; GPT-2 is not parallel); logits read all.
score[u, v] = (1/N) sum_prompts sum_pos (a_corrupt(u) - a_clean(u)) . dLD/d(input of v),
LD = logit[END, answer] - logit[END, incorrect] on the clean tokens. Head output a = z_h W_O[h] (no b_O),
input = wte + wpe (= blocks.0.hook_resid_pre; the EAP-IG code's hook_embed differs from it by the position
embedding, which is the same on both runs and so changes neither the difference nor the interpolation).
EAP-IG: input = corrupt + (k/steps)(clean - corrupt), k = 0 .. steps-1 (attribute.py's range(0, steps)),
gradients averaged over the steps, the activation differences those of the clean and corrupted runs.

Benchmark flags (docs/benchmarks.md, issue #22): --device cuda, --methods, --fast (one einsum over every
receiver per backward, as the EAP-IG code; no abs masses, no self-check), --no-validate (random synth models
have no reference.safetensors), --warmup; seconds per method are printed and stored (seconds_per_method).

Output JSON: forward_nodes, receivers, scores_eap and scores_eap_ig [n_forward][n_backward] (0 off the
graph); abs_{eap,eap_ig} = (1/N) sum |da|.|g| and abs_act_{eap,eap_ig} = (1/N) sum (|a_corrupt| + |a_clean|).|g|
elementwise (the masses the C++ test's rounding bound scales with); metric per prompt; the prompts' ids.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hooked_gpt2 import HookedGPT2, _gelu_new, validate  # noqa: E402


def split_forward(m: HookedGPT2, ids, input_override=None):
    """Runs ids [B, n] with split receiver inputs. Returns (ld [B] needs LD's answers later -> final [B, d]
    at END, outputs {node: [B, n, d]}, receivers {('q'|'k'|'v', l): [B, n, H, d], ('m', l): [B, n, d],
    ('logits',): [B, n, d]}) with retain_grad on every receiver input."""
    B, n = ids.shape
    H, hd, d = m.H, m.hd, m.d
    mask = torch.ones(n, n, dtype=torch.bool, device=ids.device).tril()
    x = m.wte[ids] + m.wpe[:n].unsqueeze(0).expand(B, n, d)
    if input_override is not None:
        x = input_override
    grad = torch.is_grad_enabled()
    if grad:  # the weights are plain tensors: a leaf at the input puts the whole run on the tape
        x = x.detach().requires_grad_(True)
    outs = {"input": x}
    recv = {}
    for l, blk in enumerate(m.blocks):
        qkv = []
        for letter, W, b in (("q", blk["W_Q"], blk["b_Q"]), ("k", blk["W_K"], blk["b_K"]), ("v", blk["W_V"], blk["b_V"])):
            xi = x.unsqueeze(2).expand(B, n, H, d) + 0.0  # this receiver's own copy of resid_pre per head
            if grad:
                xi.retain_grad()
            recv[(letter, l)] = xi
            y = m.ln(xi, blk["ln1_w"], blk["ln1_b"])  # ln1 per copy
            qkv.append(torch.einsum("bnhd,hde->bnhe", y, W) + b)
        q, k, v = qkv
        s = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(hd)
        s = torch.where(mask, s, torch.tensor(torch.finfo(torch.float32).min))
        z = torch.einsum("bhqk,bkhe->bqhe", torch.softmax(s, dim=-1), v)
        result = torch.einsum("bqhe,hed->bqhd", z, blk["W_O"])  # [B, n, H, d] per-head outputs
        for h in range(H):
            outs[f"a{l}.h{h}"] = result[:, :, h]
        x = x + result.sum(2) + blk["b_O"]
        mi = x + 0.0  # the MLP's own copy of resid_mid
        if grad:
            mi.retain_grad()
        recv[("m", l)] = mi
        mo = _gelu_new(m.ln(mi, blk["ln2_w"], blk["ln2_b"]) @ blk["W_in"] + blk["b_in"]) @ blk["W_out"] + blk["b_out"]
        outs[f"m{l}"] = mo
        x = x + mo
    if grad:
        x.retain_grad()
    recv[("logits",)] = x
    return m.ln_final(x), outs, recv


def graph_layout(L, H):
    fwd = ["input"]
    for l in range(L):
        fwd += [f"a{l}.h{h}" for h in range(H)] + [f"m{l}"]
    bwd, prev = [], []
    for l in range(L):
        for letter in "qkv":
            bwd += [(f"a{l}.h{h}", letter, (letter, l), h) for h in range(H)]
            prev += [1 + l * (H + 1)] * H
        bwd.append((f"m{l}", "-", ("m", l), None))
        prev.append(1 + l * (H + 1) + H)
    bwd.append(("logits", "-", ("logits",), None))
    prev.append(len(fwd))
    return fwd, bwd, prev


def accumulate(scores, absm, absa, fwd, bwd, prev, delta, acts, recv, weight):
    """scores[f, b] += weight * sum_{B,n,d} delta[f] * grad(recv b); absm the same over |delta|.|grad|,
    absa over (|a_corrupt| + |a_clean|).|grad| (the two rounding masses of the C++ test's bound)."""
    D = torch.stack([delta[name] for name in fwd], 2)  # [B, n, F, d]
    A = torch.stack([acts[name] for name in fwd], 2)  # [B, n, F, d]
    for bi, (_, _, key, h) in enumerate(bwd):
        g = recv[key].grad
        g = g[:, :, h] if h is not None else g  # [B, n, d]
        p = prev[bi]
        scores[:p, bi] += weight * torch.einsum("bnfd,bnd->f", D[:, :, :p].double(), g.double())
        absm[:p, bi] += weight * torch.einsum("bnfd,bnd->f", D[:, :, :p].abs().double(), g.abs().double())
        absa[:p, bi] += weight * torch.einsum("bnfd,bnd->f", A[:, :, :p].double(), g.abs().double())


def accumulate_fast(scores, fwd, bwd, prev_mask, D, recv, weight):
    """--fast: scores += weight * sum_{B,n,d} delta[f] * grad(recv b) for every receiver at once (one fp32
    einsum per backward, accumulated in fp64, edges only), as the EAP-IG code's per-batch einsum; no masses."""
    G = torch.stack([recv[key].grad[:, :, h] if h is not None else recv[key].grad for (_, _, key, h) in bwd], 2)  # [B, n, R, d]
    scores += weight * torch.einsum("bnfd,bnrd->fr", D, G).double() * prev_mask


def to_device(m: HookedGPT2, device):
    """Moves the port's weights to `device` (--device cuda)."""
    for k in ("wte", "wpe", "W_U", "lnf_w", "lnf_b"):
        setattr(m, k, getattr(m, k).to(device))
    m.blocks = [{k: v.to(device) for k, v in blk.items()} for blk in m.blocks]


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def ld(m, final, ans, inc):
    return m.logit_diff(final[:, -1], ans, inc)


def run(m, rows, steps, device="cpu", methods=("eap", "eap_ig"), fast=False):
    L, H = m.L, m.H
    fwd, bwd, prev = graph_layout(L, H)
    F, Bn = len(fwd), len(bwd)
    prev_mask = (torch.arange(F).unsqueeze(1) < torch.tensor(prev).unsqueeze(0)).double().to(device)  # [F, R] edges
    out = {"seconds_per_method": {}}
    by_len = {}
    for i, r in enumerate(rows):
        by_len.setdefault(len(r["clean_ids"]), []).append(i)
    N = len(rows)
    ld_clean, ld_corr = [None] * N, [None] * N
    for method in methods:
        sync(device)
        t0 = time.time()
        scores = torch.zeros(F, Bn, dtype=torch.float64, device=device)
        absm = torch.zeros(F, Bn, dtype=torch.float64, device=device)
        absa = torch.zeros(F, Bn, dtype=torch.float64, device=device)
        for n in sorted(by_len):
            idx = by_len[n]
            clean = torch.tensor([rows[i]["clean_ids"] for i in idx], device=device)
            corr = torch.tensor([rows[i]["corrupted_ids"] for i in idx], device=device)
            ans = torch.tensor([rows[i]["answer_id"] for i in idx], device=device)
            inc = torch.tensor([rows[i]["incorrect_id"] for i in idx], device=device)
            with torch.no_grad():
                fc, oc, _ = split_forward(m, corr)
                fk, ok, _ = split_forward(m, clean)
            if not fast:  # the split forward is the model: equal to hooked_gpt2's run (its own check)
                with torch.no_grad():
                    ref = m.run(clean)
                assert (ref - fk).abs().max().item() < 1e-4, "split forward differs from hooked_gpt2.run"
            delta = {k: (oc[k] - ok[k]).detach() for k in fwd}
            if fast:
                D = torch.stack([delta[name] for name in fwd], 2)  # [B, n, F, d]
            else:
                acts = {k: (oc[k].abs() + ok[k].abs()).detach() for k in fwd}
            acc = (lambda recv, w: accumulate_fast(scores, fwd, bwd, prev_mask, D, recv, w)) if fast else \
                (lambda recv, w: accumulate(scores, absm, absa, fwd, bwd, prev, delta, acts, recv, w))
            for j, i in enumerate(idx):
                ld_clean[i] = float(ld(m, fk, ans, inc)[j])
                ld_corr[i] = float(ld(m, fc, ans, inc)[j])
            if method == "eap":
                final, _, recv = split_forward(m, clean)
                ld(m, final, ans, inc).sum().backward()
                acc(recv, 1.0)
            else:
                x_corr, x_clean = oc["input"].detach(), ok["input"].detach()
                for k in range(steps):
                    x = x_corr + (k / steps) * (x_clean - x_corr)
                    final, _, recv = split_forward(m, clean, input_override=x)
                    ld(m, final, ans, inc).sum().backward()
                    acc(recv, 1.0 / steps)
        sync(device)
        out["seconds_per_method"][method] = time.time() - t0
        print(f"{method}: {out['seconds_per_method'][method]:.3f} s ({device}{', --fast' if fast else ''})", flush=True)
        out["scores_" + method] = (scores / N).cpu().tolist()
        if not fast:
            out["abs_" + method] = (absm / N).cpu().tolist()
            out["abs_act_" + method] = (absa / N).cpu().tolist()
    out["metric_clean_per_prompt"] = ld_clean
    out["metric_corrupt_per_prompt"] = ld_corr
    out["forward_nodes"] = fwd
    out["receivers"] = [{"node": b[0], "receiver": b[1]} for b in bwd]
    out["n_edges"] = int(sum(prev))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--n", type=int, default=8, help="the first N prompt pairs of the dataset")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (timings: docs/benchmarks.md, issue #22)")
    ap.add_argument("--methods", default="eap,eap_ig", help="comma-separated: eap, eap_ig")
    ap.add_argument("--fast", action="store_true",
                    help="benchmark mode: one einsum over all receivers per backward, no abs masses, no split-forward self-check")
    ap.add_argument("--no-validate", action="store_true", help="skip the reference.safetensors check (random synth models)")
    ap.add_argument("--warmup", action="store_true", help="run EAP once on the first prompt before timing")
    a = ap.parse_args()
    t0 = time.time()
    torch.manual_seed(0)
    m = HookedGPT2(a.model)
    val = {} if a.no_validate else validate(a.model, m)
    if any(v > 1e-4 for v in val.values()):
        raise SystemExit(f"hooked forward disagrees with reference.safetensors: {val}")
    if a.device != "cpu":
        to_device(m, a.device)
    rows = [json.loads(l) for l in open(a.dataset) if l.strip()][: a.n]
    res = {"analysis": "eap", "model": os.path.basename(os.path.normpath(a.model)), "dataset": os.path.basename(a.dataset),
           "n_prompts": len(rows), "steps": a.steps, "n_layers": m.L, "n_heads": m.H,
           "metric": "logit_diff (END = last position, on the clean tokens)",
           "prompts": [{"clean_ids": r["clean_ids"], "corrupted_ids": r["corrupted_ids"], "answer_id": r["answer_id"],
                        "incorrect_id": r["incorrect_id"]} for r in rows]}
    if a.warmup:
        run(m, rows[:1], 1, a.device, ("eap",), a.fast)
    res.update(run(m, rows, a.steps, a.device, tuple(a.methods.split(",")), a.fast))
    res["provenance"] = {"torch": torch.__version__, "reference_check": val, "seconds": round(time.time() - t0, 1)}
    with open(a.out, "w") as f:
        json.dump(res, f)
    print(f"{a.out}: {res['n_edges']} edges, {len(rows)} prompts, {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
