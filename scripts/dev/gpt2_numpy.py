#!/usr/bin/env python3
"""Independent numpy GPT-2 forward over a Hugging Face folder (safetensors read by hand).
Used while designing the planted model to check mechanisms without the C++ engine:
  /usr/bin/python3 scripts/dev/gpt2_numpy.py MODEL_DIR "When Mary and John were at the store , John gave a ring to"
"""
import json, struct, sys
import numpy as np

def load_safetensors(path):
    """name → fp32 numpy array, read by hand (header JSON + raw little-endian fp32; no safetensors package).
    Also used by eager_gpt2_forward.py."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        if v["dtype"] != "F32":
            raise SystemExit(f"{path}: tensor {k} is {v['dtype']}, this script reads fp32 folders only")
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data, dtype="<f4", count=(b - a) // 4, offset=a).reshape(v["shape"])
    return out

def gelu_new(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))

def ln(x, w, b, eps):
    m = x.mean(-1, keepdims=True); v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b

def forward(d, W, ids):
    cfg = json.load(open(f"{d}/config.json"))
    H, D = cfg["n_head"], cfg["n_embd"]; dh = D // H; eps = cfg["layer_norm_epsilon"]
    n = len(ids)
    x = W["transformer.wte.weight"][ids] + W["transformer.wpe.weight"][:n]
    hidden, pats = [x.copy()], []
    mask = np.triu(np.ones((n, n), bool), 1)
    for l in range(cfg["n_layer"]):
        p = f"transformer.h.{l}."
        h = ln(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
        qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]
        q, k, v = np.split(qkv, 3, -1)
        q = q.reshape(n, H, dh).transpose(1, 0, 2); k = k.reshape(n, H, dh).transpose(1, 0, 2); v = v.reshape(n, H, dh).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(dh); s[:, mask] = -np.inf
        s = s - s.max(-1, keepdims=True); a = np.exp(s); a /= a.sum(-1, keepdims=True)
        pats.append(a)
        z = (a @ v).transpose(1, 0, 2).reshape(n, D)
        x = x + z @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        h = ln(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps)
        x = x + gelu_new(h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"]) @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
        hidden.append(x.copy())
    xf = ln(x, W["transformer.ln_f.weight"], W["transformer.ln_f.bias"], eps)
    lm = W.get("lm_head.weight", W["transformer.wte.weight"])
    return xf @ lm.T, hidden, pats

if __name__ == "__main__":
    d = sys.argv[1]
    W = load_safetensors(f"{d}/model.safetensors")
    vocab = json.load(open(f"{d}/tokenizer.json"))["model"]["vocab"]
    inv = {v: k for k, v in vocab.items()}
    ids = [0] + [vocab[w] for w in sys.argv[2].split()]
    logits, hidden, pats = forward(d, W, ids)
    top = np.argsort(-logits[-1])[:5]
    print("next:", [(inv[i], round(float(logits[-1][i]), 2)) for i in top])
    for l, h in [(0, 0), (1, 0), (1, 1), (1, 2), (2, 1), (3, 0)]:
        a = pats[l][h][-1]
        print(f"{l}.{h} END row top:", [(inv[ids[j]], j, round(float(a[j]), 3)) for j in np.argsort(-a)[:3]])
