#include "core/model/families/common_loaders.hpp"

#include <ATen/ATen.h>

#include <utility>

#include <fmt/format.h>

namespace mechscope::families {
namespace {

/// The int `key`, or `fallback` when absent (fallback 0: required, InputError naming the key).
int intOrRequired(const ConfigReader& r, const char* key, int fallback) {
  if (fallback == 0) return r.requireInt({key});
  return static_cast<int>(r.optInt({key}).value_or(fallback));
}

}  // namespace

void parseDecoderShape(const ConfigReader& r, ModelConfig& c, const DecoderShapeDefaults& d) {
  c.nLayers = intOrRequired(r, "num_hidden_layers", d.layers);
  c.dModel = intOrRequired(r, "hidden_size", d.dModel);
  c.nHeads = intOrRequired(r, "num_attention_heads", d.heads);
  c.nKvHeads = static_cast<int>(r.optInt({"num_key_value_heads"}).value_or(d.kvHeads > 0 ? d.kvHeads : c.nHeads));
  const int dHeadFallback = d.dHead > 0 ? d.dHead : (c.nHeads > 0 ? c.dModel / c.nHeads : 0);
  c.dHead = static_cast<int>(r.optInt({"head_dim"}).value_or(dHeadFallback));
  c.dMlp = intOrRequired(r, "intermediate_size", d.dMlp);
  c.dVocab = intOrRequired(r, "vocab_size", d.vocab);
  c.nCtx = intOrRequired(r, "max_position_embeddings", d.ctx);
}

void parseRmsGatedRotary(const ConfigReader& r, ModelConfig& c, std::initializer_list<const char*> actKeys,
                         const char* actDefault) {
  c.normKind = NormKind::RMSNorm;
  c.normEps = r.optDouble({"rms_norm_eps"}, 1e-6);
  c.activation = r.activation(r.optString(actKeys, actDefault));
  c.gatedMlp = true;
  c.positional = PositionalKind::Rotary;
}

at::Tensor plainNorm(const WeightSource& s, const std::string& name, int64_t n) { return s.get(name, {n}); }

std::string decoderPrefix(const WeightSource& s) { return s.has("model.embed_tokens.weight") ? "model." : ""; }

ModelWeights loadDecoderStack(const WeightSource& s, const ModelConfig& c, const std::string& p, const LayerReader& layer,
                              const NormReader& norm) {
  const int64_t d = c.dModel;
  ModelWeights w;
  w.wE = s.get(p + "embed_tokens.weight", {c.dVocab, d});
  for (int l = 0; l < c.nLayers; ++l) w.layers.push_back(layer(fmt::format("{}layers.{}.", p, l), l));
  w.lnFinalW = norm(s, p + "norm.weight", d);
  w.wU = c.tiedEmbeddings ? w.wE : s.get("lm_head.weight", {c.dVocab, d});
  return w;
}

void loadQkvProjections(const WeightSource& s, const ModelConfig& c, const std::string& b, LayerWeights& L) {
  const int64_t d = c.dModel, q = int64_t{c.nHeads} * c.dHead, kv = int64_t{c.nKvHeads} * c.dHead;
  L.wQ = s.get(b + "self_attn.q_proj.weight", {q, d});
  L.wK = s.get(b + "self_attn.k_proj.weight", {kv, d});
  L.wV = s.get(b + "self_attn.v_proj.weight", {kv, d});
  if (!c.attnQkvBias) return;
  L.bQ = s.get(b + "self_attn.q_proj.bias", {q});
  L.bK = s.get(b + "self_attn.k_proj.bias", {kv});
  L.bV = s.get(b + "self_attn.v_proj.bias", {kv});
}

void loadOutProjection(const WeightSource& s, const ModelConfig& c, const std::string& b, LayerWeights& L) {
  const int64_t d = c.dModel, q = int64_t{c.nHeads} * c.dHead;
  L.wO = s.get(b + "self_attn.o_proj.weight", {d, q});
  if (c.attnOutBias) L.bO = s.get(b + "self_attn.o_proj.bias", {d});
}

void loadAttentionProjections(const WeightSource& s, const ModelConfig& c, const std::string& b, LayerWeights& L) {
  loadQkvProjections(s, c, b, L);
  loadOutProjection(s, c, b, L);
}

void loadQkNorms(const WeightSource& s, const std::string& b, int64_t nq, int64_t nk, LayerWeights& L,
                 const NormReader& norm) {
  L.qNormW = norm(s, b + "self_attn.q_norm.weight", nq);
  L.kNormW = norm(s, b + "self_attn.k_norm.weight", nk);
}

void loadGatedMlp(const WeightSource& s, const ModelConfig& c, const std::string& b, LayerWeights& L) {
  const int64_t d = c.dModel, m = c.dMlp;
  L.wGate = s.get(b + "mlp.gate_proj.weight", {m, d});
  L.wIn = s.get(b + "mlp.up_proj.weight", {m, d});
  L.wOut = s.get(b + "mlp.down_proj.weight", {d, m});
  if (!c.mlpBias) return;
  L.bIn = s.get(b + "mlp.up_proj.bias", {m});
  L.bOut = s.get(b + "mlp.down_proj.bias", {d});
  L.bGate = s.get(b + "mlp.gate_proj.bias", {m});
}

}  // namespace mechscope::families
