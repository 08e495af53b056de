"""Tiny random-init Hugging Face checkpoints for the families of issue #23 (Gemma 2/3, Mixtral,
Qwen2-MoE, Qwen3-MoE, gpt-oss, Phi-3, OLMo-2), with reference outputs, in the layout of
../shared/fixtures/models (see tests/data/families/README.md). Run where transformers is installed
(the GPU box):  OUT=dir python3 scripts/device/make_family_fixtures.py
Each folder gets config.json + model.safetensors (save_pretrained) and reference.safetensors with
input_ids [2, T], logits, hidden_states [L+1, 2, T, d], attentions [L, 2, H, T, T] (eager, fp32) and,
for mixture-of-experts families, router_logits [L_moe, 2*T, n_experts] (HF's pre-softmax router output).
Sizes are chosen so every peculiarity bites at T = 24: sliding windows of 8, soft-caps below the
typical score, sink logits of order 1, YaRN/longrope factors applied."""
import os, sys, traceback
import torch, transformers
from safetensors.torch import save_file

OUT = os.environ.get("OUT", "out")
T = 24
V = 256
print("transformers", transformers.__version__, "torch", torch.__version__)


def ref_dump(model, name, outdir):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, V, (2, T), generator=g)
    kwargs = dict(input_ids=ids, output_hidden_states=True, output_attentions=True)
    if getattr(model.config, "num_local_experts", None) or getattr(model.config, "num_experts", None):
        kwargs["output_router_logits"] = True
    with torch.no_grad():
        o = model(**kwargs)
    t = {"input_ids": ids.to(torch.int64).contiguous(), "logits": o.logits.float().contiguous(),
         "hidden_states": torch.stack(o.hidden_states).float().contiguous(),
         "attentions": torch.stack(o.attentions).float().contiguous()}
    rl = getattr(o, "router_logits", None)
    if rl is not None:
        rl = [r for r in rl if r is not None]
        if rl:
            t["router_logits"] = torch.stack([r.reshape(2 * T, -1) for r in rl]).float().contiguous()
    save_file(t, os.path.join(outdir, "reference.safetensors"))
    print(name, {k: tuple(v.shape) for k, v in t.items()}, "logit range",
          float(o.logits.min()), float(o.logits.max()))


def make(name, cls, cfg, special=None):
    try:
        cfg._attn_implementation = "eager"
        torch.manual_seed(sum(map(ord, name)))
        m = cls(cfg).eval().float()
        with torch.no_grad():  # far from uniform attention; norms away from 1
            for n, p in m.named_parameters():
                if special and special(n, p):
                    continue
                if p.dim() >= 2:
                    p.normal_(0, 0.25)
                elif "norm" in n or "ln" in n:
                    p.uniform_(0.6, 1.4) if n.endswith("weight") else p.normal_(0, 0.1)
                else:
                    p.normal_(0, 0.1)
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        m.save_pretrained(d, safe_serialization=True)
        ref_dump(m, name, d)
    except Exception:
        print("FAILED", name)
        traceback.print_exc()


def gemma_norms(n, p):
    # Gemma's RMSNorm scales by (1 + w): keep 1 + w in [0.6, 1.4]
    if p.dim() == 1 and "norm" in n:
        p.uniform_(-0.4, 0.4)
        return True
    return False


def sinks_big(n, p):
    if n.endswith("sinks"):
        p.normal_(0, 1.0)
        return True
    return False


C = transformers
common = dict(vocab_size=V, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)

make("gemma2", C.Gemma2ForCausalLM, C.Gemma2Config(
    **common, intermediate_size=96, num_hidden_layers=3, head_dim=16, query_pre_attn_scalar=24,
    sliding_window=8, attn_logit_softcapping=4.0, final_logit_softcapping=3.0,
    hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True), gemma_norms)

make("gemma3", C.Gemma3ForCausalLM, C.Gemma3TextConfig(
    **common, intermediate_size=96, num_hidden_layers=4, head_dim=16, query_pre_attn_scalar=24,
    sliding_window=8, layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
    hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True), gemma_norms)

make("mixtral", C.MixtralForCausalLM, C.MixtralConfig(
    **common, intermediate_size=48, num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2,
    sliding_window=None, tie_word_embeddings=False))

make("qwen2_moe", C.Qwen2MoeForCausalLM, C.Qwen2MoeConfig(
    **common, intermediate_size=96, moe_intermediate_size=32, shared_expert_intermediate_size=48,
    num_hidden_layers=3, num_experts=4, num_experts_per_tok=2, norm_topk_prob=False, decoder_sparse_step=1,
    mlp_only_layers=[1], tie_word_embeddings=False))

make("qwen3_moe", C.Qwen3MoeForCausalLM, C.Qwen3MoeConfig(
    **common, intermediate_size=96, moe_intermediate_size=32, head_dim=32, num_hidden_layers=2,
    num_experts=4, num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
    tie_word_embeddings=False))

make("gpt_oss", C.GptOssForCausalLM, C.GptOssConfig(
    **common, intermediate_size=32, num_hidden_layers=2, head_dim=16, num_local_experts=4,
    num_experts_per_tok=2, sliding_window=8, layer_types=["sliding_attention", "full_attention"],
    tie_word_embeddings=False), sinks_big)

make("phi3", C.Phi3ForCausalLM, C.Phi3Config(
    **common, intermediate_size=96, num_hidden_layers=2, partial_rotary_factor=0.5,
    tie_word_embeddings=False))

hd = 16
make("phi3_longrope", C.Phi3ForCausalLM, C.Phi3Config(
    **common, intermediate_size=96, num_hidden_layers=2, original_max_position_embeddings=16,
    rope_scaling={"rope_type": "longrope", "type": "longrope",
                  "short_factor": [1.0 + 0.1 * i for i in range(hd // 2)],
                  "long_factor": [1.5 + 0.5 * i for i in range(hd // 2)]},
    tie_word_embeddings=False))

make("olmo2", C.Olmo2ForCausalLM, C.Olmo2Config(
    **common, intermediate_size=96, num_hidden_layers=3, tie_word_embeddings=False))

print("done")
