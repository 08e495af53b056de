// GPT-NeoX / Pythia: fused QKV interleaved per head ([head, {q,k,v}, d_head] rows), partial rotary,
// parallel residual (attention and MLP both read the block input), untied unembedding.
#include <ATen/ATen.h>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/family_spec.hpp"

namespace mechscope {
namespace {

void parseNeox(const ConfigReader& r, ModelConfig& c) {
  c.nLayers = r.requireInt({"num_hidden_layers"});
  c.dModel = r.requireInt({"hidden_size"});
  c.nHeads = r.requireInt({"num_attention_heads"});
  c.nKvHeads = c.nHeads;
  c.dHead = c.nHeads > 0 ? c.dModel / c.nHeads : 0;
  c.dMlp = r.requireInt({"intermediate_size"});
  c.dVocab = r.requireInt({"vocab_size"});
  c.nCtx = r.requireInt({"max_position_embeddings"});
  c.normKind = NormKind::LayerNorm;
  c.normBias = true;
  c.normEps = r.optDouble({"layer_norm_eps"}, 1e-5);
  c.activation = r.activation(r.optString({"hidden_act"}, "gelu"));
  c.positional = PositionalKind::Rotary;
  r.readRope(c, 10000.0, 0.25);
  c.parallelAttnMlp = r.optBool({"use_parallel_residual"}, true);
  c.attnQkvBias = c.attnOutBias = r.optBool({"attention_bias"}, true);
  c.mlpBias = true;
  c.tiedEmbeddings = r.optBool({"tie_word_embeddings"}, false);
  r.readSpecialTokens(c);
}

ModelWeights loadNeox(const WeightSource& s, const ModelConfig& c) {
  const std::string p = s.has("gpt_neox.embed_in.weight") ? "gpt_neox." : "";
  const int64_t d = c.dModel, m = c.dMlp, H = c.nHeads, dh = c.dHead;
  ModelWeights w;
  w.wE = s.get(p + "embed_in.weight", {c.dVocab, d});
  for (int l = 0; l < c.nLayers; ++l) {
    const std::string b = fmt::format("{}layers.{}.", p, l);
    LayerWeights L;
    L.ln1W = s.get(b + "input_layernorm.weight", {d});
    L.ln1B = s.get(b + "input_layernorm.bias", {d});
    // Rows are [head, {q,k,v}, d_head]: de-interleave into three [H * d_head, d_model] blocks.
    const at::Tensor qkv = s.getCpu(b + "attention.query_key_value.weight", {3 * H * dh, d}).view({H, 3, dh, d});
    L.wQ = s.place(qkv.select(1, 0).reshape({H * dh, d}));
    L.wK = s.place(qkv.select(1, 1).reshape({H * dh, d}));
    L.wV = s.place(qkv.select(1, 2).reshape({H * dh, d}));
    if (c.attnQkvBias) {
      const at::Tensor qkvB = s.getCpu(b + "attention.query_key_value.bias", {3 * H * dh}).view({H, 3, dh});
      L.bQ = s.place(qkvB.select(1, 0).reshape({H * dh}));
      L.bK = s.place(qkvB.select(1, 1).reshape({H * dh}));
      L.bV = s.place(qkvB.select(1, 2).reshape({H * dh}));
    }
    L.wO = s.get(b + "attention.dense.weight", {d, H * dh});
    if (c.attnOutBias) L.bO = s.get(b + "attention.dense.bias", {d});
    L.ln2W = s.get(b + "post_attention_layernorm.weight", {d});
    L.ln2B = s.get(b + "post_attention_layernorm.bias", {d});
    L.wIn = s.get(b + "mlp.dense_h_to_4h.weight", {m, d});
    L.bIn = s.get(b + "mlp.dense_h_to_4h.bias", {m});
    L.wOut = s.get(b + "mlp.dense_4h_to_h.weight", {d, m});
    L.bOut = s.get(b + "mlp.dense_4h_to_h.bias", {d});
    w.layers.push_back(std::move(L));
  }
  w.lnFinalW = s.get(p + "final_layer_norm.weight", {d});
  w.lnFinalB = s.get(p + "final_layer_norm.bias", {d});
  w.wU = c.tiedEmbeddings ? w.wE : s.get("embed_out.weight", {c.dVocab, d});
  return w;
}

}  // namespace

const FamilySpec& gptNeoxFamily() {
  static const FamilySpec spec{"gpt_neox",
                               "GPT-NeoX / Pythia (head-interleaved fused QKV, partial rotary, parallel residual)",
                               parseNeox, loadNeox};
  return spec;
}

}  // namespace mechscope
