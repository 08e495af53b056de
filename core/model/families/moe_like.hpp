#pragma once
// Shared parsing and weight mapping of the mixture-of-experts families (Mixtral, Qwen2-MoE, Qwen3-MoE,
// gpt-oss): expert counts, which layers are sparse, and per-expert Linear weights.
#include <string>
#include <vector>

#include "core/model/family_spec.hpp"

namespace mechscope::families {

/// Reads the routed experts: count (`num_local_experts` or `num_experts`), `num_experts_per_tok`, and
/// marks the sparse layers by Qwen-MoE's rule (not in `mlp_only_layers`, (l + 1) % `decoder_sparse_step`
/// == 0; every layer when neither key is present). `dExpert` is the size of one expert.
void parseMoe(const ConfigReader& r, ModelConfig& c, int dExpert);

/// HF tensor names of one expert's projections under "{layer}{block}.experts.{e}.".
struct ExpertNames {
  std::string gate, up, down;  ///< e.g. "w1", "w3", "w2" (Mixtral) or "gate_proj", "up_proj", "down_proj"
};

/// Loads the router "{b}.{router}.weight" [n_experts, d_model] and every expert
/// "{b}.experts.{e}.{names.*}.weight" (Linear layout, views of the file) of sparse layer prefix `b`.
MoeWeights loadSeparateExperts(const WeightSource& s, const ModelConfig& c, const std::string& b, const std::string& router,
                               const ExpertNames& names);

}  // namespace mechscope::families
