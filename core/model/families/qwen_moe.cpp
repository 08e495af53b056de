// Qwen2-MoE and Qwen3-MoE: Qwen2 / Qwen3 attention with a mixture of experts in the sparse layers
// (mlp_only_layers, decoder_sparse_step): softmax over the router logits, top-k renormalised only with
// norm_topk_prob; Qwen2-MoE adds an always-on shared expert scaled by sigmoid(shared_expert_gate · x).
#include <fmt/format.h>

#include "core/model/families/common_loaders.hpp"
#include "core/model/families/llama_like.hpp"
#include "core/model/families/moe_like.hpp"

namespace mechscope {

namespace {

/// The MoE keys both Qwen families share; the dense layers keep intermediate_size.
void parseQwenMoe(const ConfigReader& r, ModelConfig& c) {
  families::parseMoe(r, c, r.requireInt({"moe_intermediate_size"}));
  c.moe.normTopK = r.optBool({"norm_topk_prob"}, false);
  c.moe.dShared = static_cast<int>(r.optInt({"shared_expert_intermediate_size"}).value_or(0));
  c.moe.sharedGate = c.moe.dShared > 0;
}

ModelWeights loadQwenMoe(const WeightSource& s, const ModelConfig& c) {
  ModelWeights w = families::loadLlamaLike(s, c);
  const std::string p = families::decoderPrefix(s);
  const int64_t d = c.dModel, m = c.moe.dShared;
  for (int l = 0; l < c.nLayers; ++l) {
    if (!c.isMoeLayer(l)) continue;
    const std::string b = fmt::format("{}layers.{}.mlp.", p, l);
    MoeWeights moe = families::loadSeparateExperts(s, c, b, "gate", {"gate_proj", "up_proj", "down_proj"});
    if (m > 0) {
      moe.shared.wGate = s.get(b + "shared_expert.gate_proj.weight", {m, d});
      moe.shared.wIn = s.get(b + "shared_expert.up_proj.weight", {m, d});
      moe.shared.wOut = s.get(b + "shared_expert.down_proj.weight", {d, m});
      moe.wSharedGate = s.get(b + "shared_expert_gate.weight", {1, d});
    }
    w.layers[static_cast<size_t>(l)].moe = std::move(moe);
  }
  return w;
}

}  // namespace

const FamilySpec& qwen2MoeFamily() {
  static const FamilySpec spec{"qwen2_moe", "Qwen2-MoE (top-k experts + sigmoid-gated shared expert, dense mlp_only_layers, q/k/v biases)",
                               [](const ConfigReader& r, ModelConfig& c) {
                                 families::LlamaFlags f = families::qwen2Flags();
                                 f.qkvBiasDefault = r.optBool({"qkv_bias"}, true);
                                 families::parseLlamaLike(r, c, f);
                                 parseQwenMoe(r, c);
                               },
                               loadQwenMoe};
  return spec;
}

const FamilySpec& qwen3MoeFamily() {
  static const FamilySpec spec{"qwen3_moe", "Qwen3-MoE (top-k experts, norm_topk_prob, q/k norms, explicit head_dim)",
                               [](const ConfigReader& r, ModelConfig& c) {
                                 families::parseLlamaLike(r, c, families::qwen3Flags());
                                 parseQwenMoe(r, c);
                               },
                               loadQwenMoe};
  return spec;
}

}  // namespace mechscope
