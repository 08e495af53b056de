#!/usr/bin/env python3
"""Eager PyTorch GPT-2 forward over a Hugging Face GPT-2 folder (config.json + model.safetensors, fp32),
timed: the peer reference of bench/bench_forward (TARGETS.md: "GPT-2-small-shaped model at 1024
tokens no slower than an eager PyTorch forward of the same weights").

A plain eager GPT-2 as Hugging Face's GPT2LMHeadModel computes it (Conv1D addmm for c_attn/c_proj/
c_fc, explicit q·kᵀ, causal mask, softmax, ·v, gelu_new, tied unembedding), written against torch
only (no transformers here); gelu_new uses torch's fused tanh-approximate gelu, which favours the peer.
Safetensors are read by hand (header JSON + raw little-endian fp32).

  /usr/bin/python3 scripts/dev/eager_gpt2_forward.py MODEL_DIR --tokens 1024 --reps 3 [--threads N] [--seed 3]

Prints one JSON line: {"forward_s": [...], "min_s", "median_s", "threads", "torch", "logits_last_head": [...]}.
Token ids: the same deterministic sequence as bench_forward (id[i] = (i * 7919 + 13) % vocab).
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

import gpt2_numpy  # same folder: sys.path[0] when run as a script


def load_safetensors(path):
    """name → fp32 torch tensor (copied out of the file), via gpt2_numpy's hand-written reader."""
    return {k: torch.from_numpy(v.copy()) for k, v in gpt2_numpy.load_safetensors(path).items()}


def token_ids(n, vocab):
    return torch.tensor([(i * 7919 + 13) % vocab for i in range(n)], dtype=torch.long).unsqueeze(0)


class EagerGpt2:
    def __init__(self, folder):
        cfg = json.load(open(os.path.join(folder, "config.json")))
        self.L, self.D, self.H = cfg["n_layer"], cfg["n_embd"], cfg["n_head"]
        self.eps = cfg.get("layer_norm_epsilon", 1e-5)
        self.vocab = cfg["vocab_size"]
        W = load_safetensors(os.path.join(folder, "model.safetensors"))
        p = "transformer." if "transformer.wte.weight" in W else ""
        self.W, self.p = W, p
        self.lm = W.get("lm_head.weight", W[p + "wte.weight"])

    @torch.inference_mode()
    def forward(self, ids):
        W, p, H, D = self.W, self.p, self.H, self.D
        B, n = ids.shape
        dh = D // H
        x = W[p + "wte.weight"][ids] + W[p + "wpe.weight"][:n]  # [batch, pos, d_model]
        causal = torch.tril(torch.ones(n, n, dtype=torch.bool)).view(1, 1, n, n)
        neg = torch.tensor(torch.finfo(torch.float32).min)
        for l in range(self.L):
            b = f"{p}h.{l}."
            h = F.layer_norm(x, (D,), W[b + "ln_1.weight"], W[b + "ln_1.bias"], self.eps)
            qkv = torch.addmm(W[b + "attn.c_attn.bias"], h.view(-1, D), W[b + "attn.c_attn.weight"]).view(B, n, 3 * D)
            q, k, v = qkv.split(D, dim=2)
            q = q.view(B, n, H, dh).permute(0, 2, 1, 3)  # [batch, head, pos, d_head]
            k = k.view(B, n, H, dh).permute(0, 2, 1, 3)
            v = v.view(B, n, H, dh).permute(0, 2, 1, 3)
            s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh)  # [batch, head, query, key]
            s = torch.where(causal, s, neg)
            a = torch.softmax(s, dim=-1)
            z = torch.matmul(a, v).permute(0, 2, 1, 3).reshape(B * n, D)
            x = x + torch.addmm(W[b + "attn.c_proj.bias"], z, W[b + "attn.c_proj.weight"]).view(B, n, D)
            h = F.layer_norm(x, (D,), W[b + "ln_2.weight"], W[b + "ln_2.bias"], self.eps)
            m = F.gelu(torch.addmm(W[b + "mlp.c_fc.bias"], h.view(-1, D), W[b + "mlp.c_fc.weight"]), approximate="tanh")
            x = x + torch.addmm(W[b + "mlp.c_proj.bias"], m, W[b + "mlp.c_proj.weight"]).view(B, n, D)
        x = F.layer_norm(x, (D,), W[p + "ln_f.weight"], W[p + "ln_f.bias"], self.eps)
        return torch.matmul(x, self.lm.t())  # [batch, pos, vocab]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (default: all cores; torch 1.13 starts with 1)")
    a = ap.parse_args()
    threads = a.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    model = EagerGpt2(a.model)
    ids = token_ids(a.tokens, model.vocab)
    model.forward(ids)  # warm-up
    times = []
    logits = None
    for _ in range(a.reps):
        t0 = time.perf_counter()
        logits = model.forward(ids)
        times.append(time.perf_counter() - t0)
    s = sorted(times)
    print(json.dumps({"forward_s": times, "min_s": s[0], "median_s": s[len(s) // 2], "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "tokens": a.tokens,
                      "logits_last_head": [float(v) for v in logits[0, -1, :8]]}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
