// OLMo-2: Llama-shaped without pre-norms; the attention and MLP outputs are RMS-normed inside the
// residual branch (post_attention_layernorm, post_feedforward_layernorm) before they are added, and q/k
// are RMS-normed over the whole projection (n_heads·d_head, n_kv_heads·d_head) before rotary. Its RMSNorm
// applies the weight in fp32 before casting back.
#include <fmt/format.h>

#include "core/model/families/llama_like.hpp"

namespace mechscope {
namespace {

void parseOlmo2(const ConfigReader& r, ModelConfig& c) {
  families::parseLlamaLike(r, c, families::LlamaFlags{});
  c.qkNorm = true;
  c.qkNormWhole = true;
  c.preNorms = false;
  c.postAttnNorm = true;
  c.postMlpNorm = true;
  c.normScaleFp32 = true;
}

ModelWeights loadOlmo2(const WeightSource& s, const ModelConfig& c) {
  const std::string p = s.has("model.embed_tokens.weight") ? "model." : "";
  const int64_t d = c.dModel, m = c.dMlp, dh = c.dHead;
  const int64_t q = c.nHeads * dh, kv = c.nKvHeads * dh;
  ModelWeights w;
  w.wE = s.get(p + "embed_tokens.weight", {c.dVocab, d});
  for (int l = 0; l < c.nLayers; ++l) {
    const std::string b = fmt::format("{}layers.{}.", p, l);
    LayerWeights L;
    L.wQ = s.get(b + "self_attn.q_proj.weight", {q, d});
    L.wK = s.get(b + "self_attn.k_proj.weight", {kv, d});
    L.wV = s.get(b + "self_attn.v_proj.weight", {kv, d});
    if (c.attnQkvBias) {
      L.bQ = s.get(b + "self_attn.q_proj.bias", {q});
      L.bK = s.get(b + "self_attn.k_proj.bias", {kv});
      L.bV = s.get(b + "self_attn.v_proj.bias", {kv});
    }
    L.wO = s.get(b + "self_attn.o_proj.weight", {d, q});
    if (c.attnOutBias) L.bO = s.get(b + "self_attn.o_proj.bias", {d});
    L.qNormW = s.get(b + "self_attn.q_norm.weight", {q});
    L.kNormW = s.get(b + "self_attn.k_norm.weight", {kv});
    L.ln1PostW = s.get(b + "post_attention_layernorm.weight", {d});
    L.wGate = s.get(b + "mlp.gate_proj.weight", {m, d});
    L.wIn = s.get(b + "mlp.up_proj.weight", {m, d});
    L.wOut = s.get(b + "mlp.down_proj.weight", {d, m});
    if (c.mlpBias) {
      L.bGate = s.get(b + "mlp.gate_proj.bias", {m});
      L.bIn = s.get(b + "mlp.up_proj.bias", {m});
      L.bOut = s.get(b + "mlp.down_proj.bias", {d});
    }
    L.ln2PostW = s.get(b + "post_feedforward_layernorm.weight", {d});
    w.layers.push_back(std::move(L));
  }
  w.lnFinalW = s.get(p + "norm.weight", {d});
  w.wU = c.tiedEmbeddings ? w.wE : s.get("lm_head.weight", {c.dVocab, d});
  return w;
}

}  // namespace

const FamilySpec& olmo2Family() {
  static const FamilySpec spec{"olmo2", "OLMo-2 (post-norms inside the residual branch, q/k RMSNorm over the whole projection)",
                               parseOlmo2, loadOlmo2};
  return spec;
}

}  // namespace mechscope
