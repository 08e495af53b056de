"""A hooked GPT-2 forward (fp32, CPU) with TransformerLens-style hook points, for circuits_ref.py (issue #19).

Reads config.json + model.safetensors itself (bf16 weights upcast to fp32; common.read_safetensors) and
follows transformers' GPT2LMHeadModel (Conv1D weights [in, out], gelu_new, eager attention: scores
q·k/sqrt(d_head), causal mask, softmax in fp32). The unembedding is lm_head.weight or, tied, wte.

Runs a batch of sequences of ONE length (no padding, no attention mask beyond the causal one).
Hook points (names as TransformerLens; shapes with the batch first):
  hook_embed, hook_pos_embed                      [B, n, d]
  blocks.{l}.hook_resid_pre                       [B, n, d]
  blocks.{l}.attn.hook_q / hook_k / hook_v        [B, n, H, d_head]  (after the bias)
  blocks.{l}.attn.hook_attn_scores                [B, H, q, k]       (scaled, masked, before softmax)
  blocks.{l}.attn.hook_pattern                    [B, H, q, k]       (after softmax, before the value product)
  blocks.{l}.attn.hook_z                          [B, n, H, d_head]  (per-head output before W_O)
  blocks.{l}.hook_attn_out                        [B, n, d]          (sum_h z_h W_O[h] + b_O)
  blocks.{l}.hook_resid_mid                       [B, n, d]
  blocks.{l}.hook_mlp_out                         [B, n, d]
  blocks.{l}.hook_resid_post                      [B, n, d]
  ln_final.hook_scale                             [B, n, 1]          (sqrt(var + eps) of the final residual)
  ln_final.hook_normalized                        [B, n, d]          (ln_f output, weight and bias applied)
A hook is fn(tensor) -> tensor (return the replacement; in-place edits are also seen downstream).
Hooks are applied in the order given; `cache` receives the value AFTER that point's hooks.
"""
from __future__ import annotations

import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def _gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class HookedGPT2:
    def __init__(self, model_dir: str):
        cfg = common.load_config(model_dir)
        if cfg["model_type"] != "gpt2":
            raise SystemExit(f"hooked_gpt2: model_type {cfg['model_type']} is not gpt2")
        w = {k: v.float() for k, v in common.read_safetensors(os.path.join(model_dir, "model.safetensors")).items()}
        self.cfg = cfg
        self.L, self.H, self.d = cfg["n_layer"], cfg["n_head"], cfg["n_embd"]
        self.hd = self.d // self.H
        self.eps = cfg["layer_norm_epsilon"]
        d, H, hd = self.d, self.H, self.hd
        self.wte = w["transformer.wte.weight"]
        self.wpe = w["transformer.wpe.weight"]
        self.W_U = w.get("lm_head.weight", self.wte).T.contiguous()  # [d, V]
        self.lnf_w, self.lnf_b = w["transformer.ln_f.weight"], w["transformer.ln_f.bias"]
        self.blocks = []
        for l in range(self.L):
            p = f"transformer.h.{l}."
            Wqkv, bqkv = w[p + "attn.c_attn.weight"], w[p + "attn.c_attn.bias"]  # [d, 3d], [3d]
            blk = {
                "ln1_w": w[p + "ln_1.weight"], "ln1_b": w[p + "ln_1.bias"],
                "ln2_w": w[p + "ln_2.weight"], "ln2_b": w[p + "ln_2.bias"],
                # [H, d, hd] per head (columns h*hd:(h+1)*hd of each of the q/k/v blocks)
                "W_Q": Wqkv[:, 0:d].reshape(d, H, hd).permute(1, 0, 2).contiguous(),
                "W_K": Wqkv[:, d:2 * d].reshape(d, H, hd).permute(1, 0, 2).contiguous(),
                "W_V": Wqkv[:, 2 * d:3 * d].reshape(d, H, hd).permute(1, 0, 2).contiguous(),
                "b_Q": bqkv[0:d].reshape(H, hd), "b_K": bqkv[d:2 * d].reshape(H, hd), "b_V": bqkv[2 * d:3 * d].reshape(H, hd),
                "W_O": w[p + "attn.c_proj.weight"].reshape(H, hd, d).contiguous(),  # rows h*hd:(h+1)*hd
                "b_O": w[p + "attn.c_proj.bias"],
                "W_in": w[p + "mlp.c_fc.weight"], "b_in": w[p + "mlp.c_fc.bias"],
                "W_out": w[p + "mlp.c_proj.weight"], "b_out": w[p + "mlp.c_proj.bias"],
            }
            self.blocks.append(blk)

    # ----------------------------------------------------------------------------------------------
    def ln(self, x, w, b):
        return torch.nn.functional.layer_norm(x, (self.d,), w, b, self.eps)

    def ln_final(self, x):
        return self.ln(x, self.lnf_w, self.lnf_b)

    @torch.no_grad()
    def run(self, ids: torch.Tensor, hooks=None, cache: dict | None = None, cache_names=None) -> torch.Tensor:
        """ids [B, n] (one length). hooks: list of (name, fn). cache: dict filled with the hook points
        whose name is in cache_names (a set, or None for all). Returns ln_f output [B, n, d]."""
        hk = {}
        for name, fn in hooks or []:
            hk.setdefault(name, []).append(fn)

        def h(name, t):
            for fn in hk.get(name, ()):
                r = fn(t)
                t = t if r is None else r
            if cache is not None and (cache_names is None or name in cache_names):
                cache[name] = t
            return t

        B, n = ids.shape
        H, hd, d = self.H, self.hd, self.d
        mask = torch.ones(n, n, dtype=torch.bool, device=ids.device).tril()
        x = h("hook_embed", self.wte[ids]) + h("hook_pos_embed", self.wpe[:n].unsqueeze(0).expand(B, n, d))
        for l, blk in enumerate(self.blocks):
            pre = f"blocks.{l}."
            x = h(pre + "hook_resid_pre", x)
            y = self.ln(x, blk["ln1_w"], blk["ln1_b"])
            q = h(pre + "attn.hook_q", torch.einsum("bnd,hde->bnhe", y, blk["W_Q"]) + blk["b_Q"])
            k = h(pre + "attn.hook_k", torch.einsum("bnd,hde->bnhe", y, blk["W_K"]) + blk["b_K"])
            v = h(pre + "attn.hook_v", torch.einsum("bnd,hde->bnhe", y, blk["W_V"]) + blk["b_V"])
            s = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(hd)
            s = torch.where(mask, s, torch.tensor(torch.finfo(torch.float32).min))
            s = h(pre + "attn.hook_attn_scores", s)
            a = h(pre + "attn.hook_pattern", torch.softmax(s, dim=-1))
            z = h(pre + "attn.hook_z", torch.einsum("bhqk,bkhe->bqhe", a, v))
            o = h(pre + "hook_attn_out", z.reshape(B, n, d) @ blk["W_O"].reshape(d, d) + blk["b_O"])
            x = h(pre + "hook_resid_mid", x + o)
            y = self.ln(x, blk["ln2_w"], blk["ln2_b"])
            m = h(pre + "hook_mlp_out", _gelu_new(y @ blk["W_in"] + blk["b_in"]) @ blk["W_out"] + blk["b_out"])
            x = h(pre + "hook_resid_post", x + m)
        mu = x.mean(-1, keepdim=True)
        scale = h("ln_final.hook_scale", ((x - mu).pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return h("ln_final.hook_normalized", (x - mu) / scale * self.lnf_w + self.lnf_b)

    # ----------------------------------------------------------------------------------------------
    def logits(self, final: torch.Tensor) -> torch.Tensor:
        """ln_f output [..., d] -> logits [..., V] (GPT-2 has no unembedding bias)."""
        return final @ self.W_U

    def logit_diff(self, final_end: torch.Tensor, ans: torch.Tensor, inc: torch.Tensor) -> torch.Tensor:
        """final_end [B, d] (ln_f output at END), ans/inc [B] token ids -> logit[ans] - logit[inc], [B]."""
        return (final_end * (self.W_U[:, ans] - self.W_U[:, inc]).T).sum(-1)


def validate(model_dir: str, model: HookedGPT2 | None = None) -> dict:
    """Max |error| against reference.safetensors (transformers' eager tensors): hidden states (HF order,
    the last after ln_f), attention probabilities and last logits of every row at its real length."""
    model = model or HookedGPT2(model_dir)
    ref = common.read_safetensors(os.path.join(model_dir, "reference.safetensors"))
    worst = {"hidden": 0.0, "attention": 0.0, "last_logits": 0.0}
    for b in range(ref["input_ids"].shape[0]):
        n = int(ref["lengths"][b])
        cache = {}
        fin = model.run(ref["input_ids"][b:b + 1, :n], cache=cache)
        hs = [cache["blocks.0.hook_resid_pre"][0]] + [cache[f"blocks.{l}.hook_resid_post"][0] for l in range(model.L - 1)] + [fin[0]]
        eh = (torch.stack(hs) - ref["hidden_states"][:, b, :n]).abs().max().item()
        at = torch.stack([cache[f"blocks.{l}.attn.hook_pattern"][0] for l in range(model.L)])
        ea = (at - ref["attentions"][:, b, :, :n, :n]).abs().max().item()
        el = (model.logits(fin[0, n - 1]) - ref["last_logits"][b]).abs().max().item()
        worst = {"hidden": max(worst["hidden"], eh), "attention": max(worst["attention"], ea), "last_logits": max(worst["last_logits"], el)}
    return worst


if __name__ == "__main__":
    for m in sys.argv[1:]:
        e = validate(m)
        ok = all(v <= 1e-4 for v in e.values())
        print(f"{m}: max|err| hidden {e['hidden']:.3g}  attention {e['attention']:.3g}  last logits {e['last_logits']:.3g}  {'ok' if ok else 'FAIL'}")
        if not ok:
            sys.exit(1)
