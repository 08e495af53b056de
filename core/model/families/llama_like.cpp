#include "core/model/families/llama_like.hpp"

#include <ATen/ATen.h>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope::families {

void parseLlamaLike(const ConfigReader& r, ModelConfig& c, const LlamaFlags& flags) {
  c.nLayers = r.requireInt({"num_hidden_layers"});
  c.dModel = r.requireInt({"hidden_size"});
  c.nHeads = r.requireInt({"num_attention_heads"});
  c.nKvHeads = static_cast<int>(r.optInt({"num_key_value_heads"}).value_or(c.nHeads));
  c.dHead = static_cast<int>(r.optInt({"head_dim"}).value_or(c.nHeads > 0 ? c.dModel / c.nHeads : 0));
  c.dMlp = r.requireInt({"intermediate_size"});
  c.dVocab = r.requireInt({"vocab_size"});
  c.nCtx = r.requireInt({"max_position_embeddings"});
  c.normKind = NormKind::RMSNorm;
  c.normEps = r.optDouble({"rms_norm_eps"}, 1e-6);
  c.activation = r.activation(r.optString({"hidden_act"}, "silu"));
  c.gatedMlp = true;
  c.positional = PositionalKind::Rotary;
  r.readRope(c, 10000.0, 1.0);
  const bool bias = r.optBool({"attention_bias"}, flags.qkvBiasDefault);
  c.attnQkvBias = flags.qkvBiasDefault || bias;
  c.attnOutBias = flags.outBiasFollowsQkv && bias;
  c.mlpBias = r.optBool({"mlp_bias"}, false);
  c.qkNorm = flags.qkNorm;
  c.tiedEmbeddings = r.optBool({"tie_word_embeddings"}, false);
  if (flags.slidingWindow) {
    if (auto sw = r.optInt({"sliding_window"})) c.slidingWindow = static_cast<int>(*sw);
  }
  if (flags.qwenSlidingWindow && r.optBool({"use_sliding_window"}, false))
    throw UnsupportedError(fmt::format("{}: use_sliding_window=true (per-layer sliding windows) is not supported", r.source()));
  r.readSpecialTokens(c);
}

ModelWeights loadLlamaLike(const WeightSource& s, const ModelConfig& c) {
  const std::string p = s.has("model.embed_tokens.weight") ? "model." : "";
  const int64_t d = c.dModel, m = c.dMlp, dh = c.dHead;
  const int64_t q = c.nHeads * dh, kv = c.nKvHeads * dh;
  ModelWeights w;
  w.wE = s.get(p + "embed_tokens.weight", {c.dVocab, d});
  for (int l = 0; l < c.nLayers; ++l) {
    const std::string b = fmt::format("{}layers.{}.", p, l);
    LayerWeights L;
    L.ln1W = s.get(b + "input_layernorm.weight", {d});
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
    if (c.qkNorm) {
      L.qNormW = s.get(b + "self_attn.q_norm.weight", {dh});
      L.kNormW = s.get(b + "self_attn.k_norm.weight", {dh});
    }
    L.ln2W = s.get(b + "post_attention_layernorm.weight", {d});
    if (c.isMoeLayer(l)) {  // the mixture's weights are the MoE family's to read
      w.layers.push_back(std::move(L));
      continue;
    }
    L.wGate = s.get(b + "mlp.gate_proj.weight", {m, d});
    L.wIn = s.get(b + "mlp.up_proj.weight", {m, d});
    L.wOut = s.get(b + "mlp.down_proj.weight", {d, m});
    if (c.mlpBias) {
      L.bIn = s.get(b + "mlp.up_proj.bias", {m});
      L.bOut = s.get(b + "mlp.down_proj.bias", {d});
      L.bGate = s.get(b + "mlp.gate_proj.bias", {m});
    }
    w.layers.push_back(std::move(L));
  }
  w.lnFinalW = s.get(p + "norm.weight", {d});
  w.wU = c.tiedEmbeddings ? w.wE : s.get("lm_head.weight", {c.dVocab, d});
  return w;
}

}  // namespace mechscope::families
