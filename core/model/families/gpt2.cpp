// GPT-2: learned positions, LayerNorm, Conv1D weights stored [in, out] (transposed here as views),
// fused c_attn QKV split into Q, K, V, gelu_new, tied unembedding.
#include <ATen/ATen.h>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/family_spec.hpp"

namespace mechscope {
namespace {

void parseGpt2(const ConfigReader& r, ModelConfig& c) {
  c.nLayers = r.requireInt({"n_layer"});
  c.dModel = r.requireInt({"n_embd"});
  c.nHeads = r.requireInt({"n_head"});
  c.nKvHeads = c.nHeads;
  c.dHead = c.nHeads > 0 ? c.dModel / c.nHeads : 0;
  c.dMlp = static_cast<int>(r.optInt({"n_inner"}).value_or(4LL * c.dModel));
  c.dVocab = r.requireInt({"vocab_size"});
  c.nCtx = r.requireInt({"n_positions", "n_ctx"});
  c.normKind = NormKind::LayerNorm;
  c.normBias = true;
  c.normEps = r.optDouble({"layer_norm_epsilon"}, 1e-5);
  c.activation = r.activation(r.optString({"activation_function"}, "gelu_new"));
  c.positional = PositionalKind::Learned;
  c.attnQkvBias = c.attnOutBias = c.mlpBias = true;
  c.tiedEmbeddings = r.optBool({"tie_word_embeddings"}, true);
  if (r.optBool({"scale_attn_by_inverse_layer_idx"}, false) || !r.optBool({"scale_attn_weights"}, true))
    throw UnsupportedError(fmt::format("{}: GPT-2 attention scaling variants (scale_attn_by_inverse_layer_idx, "
                                       "scale_attn_weights=false) are not supported", r.source()));
  r.readSpecialTokens(c);
}

ModelWeights loadGpt2(const WeightSource& s, const ModelConfig& c) {
  // GPT2LMHeadModel saves "transformer.*"; a bare GPT2Model saves without the prefix.
  const std::string p = s.has("transformer.wte.weight") ? "transformer." : "";
  const int64_t d = c.dModel, m = c.dMlp;
  ModelWeights w;
  w.wE = s.get(p + "wte.weight", {c.dVocab, d});
  w.wPos = s.get(p + "wpe.weight", {c.nCtx, d});
  for (int l = 0; l < c.nLayers; ++l) {
    const std::string b = fmt::format("{}h.{}.", p, l);
    LayerWeights L;
    L.ln1W = s.get(b + "ln_1.weight", {d});
    L.ln1B = s.get(b + "ln_1.bias", {d});
    // Conv1D stores [in, out]; .t() gives the Linear layout [out, in] as a view.
    const at::Tensor qkv = s.getCpu(b + "attn.c_attn.weight", {d, 3 * d}).t();  // [3 d_model, d_model]
    const at::Tensor qkvB = s.getCpu(b + "attn.c_attn.bias", {3 * d});
    L.wQ = s.place(qkv.narrow(0, 0, d));
    L.wK = s.place(qkv.narrow(0, d, d));
    L.wV = s.place(qkv.narrow(0, 2 * d, d));
    L.bQ = s.place(qkvB.narrow(0, 0, d));
    L.bK = s.place(qkvB.narrow(0, d, d));
    L.bV = s.place(qkvB.narrow(0, 2 * d, d));
    L.wO = s.place(s.getCpu(b + "attn.c_proj.weight", {d, d}).t());
    L.bO = s.get(b + "attn.c_proj.bias", {d});
    L.ln2W = s.get(b + "ln_2.weight", {d});
    L.ln2B = s.get(b + "ln_2.bias", {d});
    L.wIn = s.place(s.getCpu(b + "mlp.c_fc.weight", {d, m}).t());
    L.bIn = s.get(b + "mlp.c_fc.bias", {m});
    L.wOut = s.place(s.getCpu(b + "mlp.c_proj.weight", {m, d}).t());
    L.bOut = s.get(b + "mlp.c_proj.bias", {d});
    w.layers.push_back(std::move(L));
  }
  w.lnFinalW = s.get(p + "ln_f.weight", {d});
  w.lnFinalB = s.get(p + "ln_f.bias", {d});
  w.wU = c.tiedEmbeddings || !s.has("lm_head.weight") ? w.wE : s.get("lm_head.weight", {c.dVocab, d});
  return w;
}

}  // namespace

const FamilySpec& gpt2Family() {
  static const FamilySpec spec{"gpt2", "GPT-2 (learned positions, LayerNorm, Conv1D fused QKV, gelu_new, tied unembed)",
                               parseGpt2, loadGpt2};
  return spec;
}

}  // namespace mechscope
