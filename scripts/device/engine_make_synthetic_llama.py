#!/usr/bin/env python3
"""Write a random-weight Llama model folder (config.json + model.safetensors) of a given size in
bf16/fp16/fp32, streaming tensor by tensor (numpy only; no torch needed).

Used to measure loading memory (peak RSS) and speed of mechscope's engine on a ~1B-parameter model:
    /usr/bin/python3 scripts/device/engine_make_synthetic_llama.py /tmp/llama-1b --preset 1b --dtype bf16
"""
import argparse
import json
import os
import struct

import numpy as np

PRESETS = {
    # TinyLlama-1.1B geometry: 22 layers, d_model 2048, 32 q heads / 4 kv heads, d_mlp 5632.
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, vocab_size=32000),
    "tiny": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1000),
}


def tensors(cfg):
    d, m, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    dh = d // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * dh
    yield "model.embed_tokens.weight", (v, d)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        yield p + "input_layernorm.weight", (d,)
        yield p + "self_attn.q_proj.weight", (d, d)
        yield p + "self_attn.k_proj.weight", (kv, d)
        yield p + "self_attn.v_proj.weight", (kv, d)
        yield p + "self_attn.o_proj.weight", (d, d)
        yield p + "post_attention_layernorm.weight", (d,)
        yield p + "mlp.gate_proj.weight", (m, d)
        yield p + "mlp.up_proj.weight", (m, d)
        yield p + "mlp.down_proj.weight", (d, m)
    yield "model.norm.weight", (d,)
    yield "lm_head.weight", (v, d)


def encode(a, dtype):
    a = a.astype(np.float32)
    if dtype == "F32":
        return a.tobytes()
    if dtype == "F16":
        return a.astype(np.float16).tobytes()
    return (a.view(np.uint32) >> 16).astype(np.uint16).tobytes()  # BF16: truncate fp32


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--preset", default="1b", choices=sorted(PRESETS))
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    st = {"bf16": "BF16", "fp16": "F16", "fp32": "F32"}[args.dtype]
    size = {"BF16": 2, "F16": 2, "F32": 4}[st]
    cfg = dict(PRESETS[args.preset])
    cfg.update(model_type="llama", architectures=["LlamaForCausalLM"], max_position_embeddings=2048,
               rms_norm_eps=1e-5, hidden_act="silu", rope_theta=10000.0, tie_word_embeddings=False,
               bos_token_id=1, eos_token_id=2, torch_dtype={"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[st])
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    header, off, n_params = {"__metadata__": {"format": "pt"}}, 0, 0
    for name, shape in tensors(cfg):
        n = int(np.prod(shape))
        header[name] = {"dtype": st, "shape": list(shape), "data_offsets": [off, off + n * size]}
        off += n * size
        n_params += n
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    rng = np.random.default_rng(args.seed)
    path = os.path.join(args.out, "model.safetensors")
    with open(path + ".partial", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name, shape in tensors(cfg):
            if name.endswith("norm.weight"):
                a = np.ones(shape, np.float32)
            else:
                a = rng.standard_normal(shape, dtype=np.float32) * (1.0 / np.sqrt(shape[-1]))
            f.write(encode(a, st))
    os.replace(path + ".partial", path)
    print(f"wrote {path}: {n_params / 1e9:.3f} B parameters, {off / 1e9:.2f} GB {st}")


if __name__ == "__main__":
    main()
