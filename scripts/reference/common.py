"""Shared loading and forward pass for the reference ports (issue #18).

Two back ends with one interface:

* ``transformers`` (the reference): ``AutoModelForCausalLM.from_pretrained(dir,
  attn_implementation="eager")``, bf16 weights upcast with ``.float()``, run with
  ``output_attentions=True, output_hidden_states=True``; MLP outputs read with forward hooks on each
  block's ``mlp`` module.
* ``--no-transformers`` (a debugging fallback for machines without transformers): a minimal
  pure-PyTorch Llama / Mistral / GPT-2 forward that reads model.safetensors itself and follows the
  transformers modelling code (RMSNorm statistics in fp32, rotate-half RoPE, GQA by repeating K/V,
  eager softmax in fp32, Mistral's sliding window: query i sees keys i-w+1..i, GPT-2 Conv1D and
  gelu_new). ``check_fallback.py`` compares it with the transformers tensors in
  reference.safetensors.

``forward(model_dir, ids)`` returns a dict of fp32 CPU tensors for ONE unpadded sequence:
  hidden_states  [L+1, n, d]  HF order: embeddings, block outputs, the last one after the final norm
  attentions     [L, H, n, n] post-softmax probabilities (per query head)
  mlp_out        [L, n, d]    each block's MLP output (what the block adds to the residual)
  logits         [n, vocab]
Nothing here knows about any analysis.
"""
from __future__ import annotations

import json
import math
import os
import struct
from functools import lru_cache

import torch

USE_TRANSFORMERS = os.environ.get("MECHSCOPE_REF_BACKEND", "transformers") == "transformers"


def set_backend(use_transformers: bool) -> None:
    global USE_TRANSFORMERS
    USE_TRANSFORMERS = use_transformers


def backend_name() -> str:
    if USE_TRANSFORMERS:
        import transformers

        return f"transformers {transformers.__version__}, torch {torch.__version__}"
    return f"fallback (pure PyTorch), torch {torch.__version__}"


# --------------------------------------------------------------------------------------------------
# safetensors without the safetensors package (bf16 read as int16 bits and reinterpreted)
_DT = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32}
_SZ = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4}


def read_safetensors(path: str) -> dict:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        blob = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = bytearray(blob[a:b])
        dt = info["dtype"]
        if dt == "BF16":
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16) if len(raw) else torch.empty(0, dtype=torch.bfloat16)
        else:
            t = torch.frombuffer(raw, dtype=_DT[dt]) if len(raw) else torch.empty(0, dtype=_DT[dt])
        out[name] = t.reshape(info["shape"]).clone()
    return out


def load_config(model_dir: str) -> dict:
    with open(os.path.join(model_dir, "config.json")) as f:
        return json.load(f)


def n_layers_heads(cfg: dict) -> tuple[int, int]:
    if cfg["model_type"] == "gpt2":
        return cfg["n_layer"], cfg["n_head"]
    return cfg["num_hidden_layers"], cfg["num_attention_heads"]


# --------------------------------------------------------------------------------------------------
# transformers back end
@lru_cache(maxsize=4)
def _hf_model(model_dir: str):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager")
    model = model.float().eval()  # bf16 weights upcast to fp32 (from_pretrained may already give fp32)
    return model


def _hf_blocks(model):
    if hasattr(model, "transformer"):  # GPT-2
        return list(model.transformer.h)
    return list(model.model.layers)


@torch.no_grad()
def _forward_hf(model_dir: str, ids: list[int]) -> dict:
    model = _hf_model(model_dir)
    mlp = {}
    handles = []
    for l, blk in enumerate(_hf_blocks(model)):
        handles.append(blk.mlp.register_forward_hook(lambda m, i, o, l=l: mlp.__setitem__(l, o.detach())))
    try:
        x = torch.tensor([ids], dtype=torch.long)
        out = model(input_ids=x, output_attentions=True, output_hidden_states=True, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    L = len(out.attentions)
    return {
        "hidden_states": torch.stack([h[0] for h in out.hidden_states]).float(),
        "attentions": torch.stack([a[0] for a in out.attentions]).float(),
        "mlp_out": torch.stack([mlp[l][0] for l in range(L)]).float(),
        "logits": out.logits[0].float(),
    }


# --------------------------------------------------------------------------------------------------
# pure-PyTorch fallback
@lru_cache(maxsize=4)
def _weights(model_dir: str) -> dict:
    return {k: v.float() for k, v in read_safetensors(os.path.join(model_dir, "model.safetensors")).items()}


def _rms(x, w, eps):
    v = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(v + eps))


def _rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def _causal_mask(n: int, window: int | None) -> torch.Tensor:
    i = torch.arange(n).unsqueeze(1)
    j = torch.arange(n).unsqueeze(0)
    ok = j <= i
    if window is not None:
        ok = ok & ((i - j) < window)
    m = torch.zeros(n, n)
    m[~ok] = torch.finfo(torch.float32).min
    return m


@torch.no_grad()
def _forward_llama(cfg: dict, w: dict, ids: list[int], uniform_heads=frozenset()) -> dict:
    n = len(ids)
    L, H = cfg["num_hidden_layers"], cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads", H)
    d = cfg["hidden_size"]
    hd = cfg.get("head_dim") or d // H
    eps = cfg["rms_norm_eps"]
    rope = cfg.get("rope_parameters") or {}
    theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
    window = cfg.get("sliding_window") if cfg["model_type"] == "mistral" else None
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    pos = torch.arange(n).float()
    freqs = torch.outer(pos, inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()  # [n, hd]
    mask = _causal_mask(n, window)
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]  # [n, d]
    hs, attns, mlps = [x], [], []
    for l in range(L):
        p = f"model.layers.{l}."
        h = _rms(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).view(n, H, hd).transpose(0, 1)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).view(n, KV, hd).transpose(0, 1)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(n, KV, hd).transpose(0, 1)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=0)
        v = v.repeat_interleave(H // KV, dim=0)
        s = (q @ k.transpose(1, 2)) * (hd ** -0.5) + mask
        a = _uniform_rows(torch.softmax(s, dim=-1, dtype=torch.float32), mask, l, uniform_heads)
        o = (a @ v).transpose(0, 1).reshape(n, H * hd) @ w[p + "self_attn.o_proj.weight"].T
        x = x + o
        h = _rms(x, w[p + "post_attention_layernorm.weight"], eps)
        m = (torch.nn.functional.silu(h @ w[p + "mlp.gate_proj.weight"].T) * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
        x = x + m
        attns.append(a)
        mlps.append(m)
        hs.append(x)
    hs[-1] = _rms(x, w["model.norm.weight"], eps)
    wu = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return {"hidden_states": torch.stack(hs), "attentions": torch.stack(attns), "mlp_out": torch.stack(mlps), "logits": hs[-1] @ wu.T}


def _uniform_rows(a, mask, layer, uniform_heads):
    """AttentionInfluence's head mask: the heads (layer, h) in uniform_heads attend uniformly over the
    keys the mask allows (causal, and within a sliding window)."""
    heads = [h for (l, h) in uniform_heads if l == layer]
    if not heads:
        return a
    allowed = (mask == 0).float()  # [n, n]
    a = a.clone()
    for h in heads:
        a[h] = allowed / allowed.sum(-1, keepdim=True)
    return a


def _gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


@torch.no_grad()
def _forward_gpt2(cfg: dict, w: dict, ids: list[int], uniform_heads=frozenset()) -> dict:
    n = len(ids)
    L, H, d = cfg["n_layer"], cfg["n_head"], cfg["n_embd"]
    hd = d // H
    eps = cfg["layer_norm_epsilon"]
    ln = lambda t, p: torch.nn.functional.layer_norm(t, (d,), w[p + ".weight"], w[p + ".bias"], eps)
    mask = _causal_mask(n, None)
    x = w["transformer.wte.weight"][torch.tensor(ids)] + w["transformer.wpe.weight"][:n]
    hs, attns, mlps = [x], [], []
    for l in range(L):
        p = f"transformer.h.{l}."
        h = ln(x, p + "ln_1")
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = (t.view(n, H, hd).transpose(0, 1) for t in qkv.split(d, dim=-1))
        s = (q @ k.transpose(1, 2)) / math.sqrt(hd) + mask
        a = _uniform_rows(torch.softmax(s, dim=-1, dtype=torch.float32), mask, l, uniform_heads)
        o = (a @ v).transpose(0, 1).reshape(n, d) @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        x = x + o
        h = ln(x, p + "ln_2")
        m = _gelu_new(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]) @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
        x = x + m
        attns.append(a)
        mlps.append(m)
        hs.append(x)
    hs[-1] = ln(x, "transformer.ln_f")
    wu = w.get("lm_head.weight", w["transformer.wte.weight"])
    return {"hidden_states": torch.stack(hs), "attentions": torch.stack(attns), "mlp_out": torch.stack(mlps), "logits": hs[-1] @ wu.T}


def _forward_fallback(model_dir: str, ids: list[int], uniform_heads=frozenset()) -> dict:
    cfg = load_config(model_dir)
    w = _weights(model_dir)
    if cfg["model_type"] == "gpt2":
        return _forward_gpt2(cfg, w, ids, uniform_heads)
    if cfg["model_type"] in ("llama", "mistral"):
        return _forward_llama(cfg, w, ids, uniform_heads)
    raise SystemExit(f"fallback forward: model_type {cfg['model_type']} not supported")


def forward(model_dir: str, ids: list[int], uniform_heads=frozenset()) -> dict:
    """One unpadded sequence → hidden_states [L+1,n,d], attentions [L,H,n,n], mlp_out [L,n,d], logits [n,V] (fp32, CPU).
    `uniform_heads`: {(layer, head)} given uniform attention over their visible keys (fallback back end only)."""
    model_dir = os.path.abspath(model_dir)
    if uniform_heads and USE_TRANSFORMERS:
        raise SystemExit("uniform head masking is implemented in the pure-PyTorch back end only (--no-transformers)")
    out = _forward_hf(model_dir, ids) if USE_TRANSFORMERS else _forward_fallback(model_dir, ids, frozenset(uniform_heads))
    return {k: v.detach().to("cpu", torch.float32) for k, v in out.items()}


# --------------------------------------------------------------------------------------------------
# inputs: the reference prompts (token ids of reference.safetensors, each row cut to its real length)
def reference_rows(model_dir: str) -> list[list[int]]:
    ref = read_safetensors(os.path.join(model_dir, "reference.safetensors"))
    ids, lengths = ref["input_ids"], ref["lengths"]
    return [ids[b, : int(lengths[b])].tolist() for b in range(ids.shape[0])]


def reference_meta(model_dir: str) -> dict:
    with open(os.path.join(model_dir, "reference.json")) as f:
        return json.load(f)


def common_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="Hugging Face model folder (config.json, model.safetensors)")
    parser.add_argument("--out", required=True, help="output JSON")
    parser.add_argument("--no-transformers", action="store_true", help="use the pure-PyTorch fallback forward (debugging only)")


def provenance(model_dir: str, settings: dict) -> dict:
    return {
        "model": os.path.relpath(os.path.abspath(model_dir), os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))),
        "backend": backend_name(),
        "precision": "fp32 (bf16 weights upcast), eager attention, CPU",
        "settings": settings,
    }


def finite_or_none(x: float):
    return None if x is None or not math.isfinite(x) else float(x)


def write_json(path: str, obj: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=False)
        f.write("\n")
