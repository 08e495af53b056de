#pragma once
// Shared parsing and weight mapping of the Llama-shaped families (Llama, Mistral, Qwen2, Qwen3):
// RMSNorm, SwiGLU, rotary, separate q/k/v/o projections, GQA. Each family file sets its flags.
#include <functional>

#include "core/model/family_spec.hpp"

namespace mechscope::families {

/// What differs between the Llama-shaped families.
struct LlamaFlags {
  bool qkvBiasDefault = false;   ///< Qwen2: q/k/v biases always on
  bool outBiasFollowsQkv = true; ///< Llama `attention_bias` covers o_proj too; Qwen2's does not
  bool qkNorm = false;           ///< Qwen3
  bool slidingWindow = false;    ///< Mistral: honour `sliding_window`
  bool qwenSlidingWindow = false;///< Qwen2/3: `use_sliding_window` (refused: per-layer windows)
};

/// Llama's flags plus an honoured `sliding_window` (Mistral, Mixtral, Phi-3).
LlamaFlags slidingWindowFlags();
/// Qwen2's: q/k/v biases always on, none on o_proj, `use_sliding_window` refused (Qwen2, Qwen2-MoE).
LlamaFlags qwen2Flags();
/// Qwen3's: per-head q/k norms, `use_sliding_window` refused (Qwen3, Qwen3-MoE).
LlamaFlags qwen3Flags();

/// Fills a ModelConfig from a Llama-shaped config.json.
void parseLlamaLike(const ConfigReader& r, ModelConfig& c, const LlamaFlags& flags);
/// A FamilySpec::parseConfig that runs parseLlamaLike with `flags`.
std::function<void(const ConfigReader&, ModelConfig&)> llamaLikeParser(LlamaFlags flags);
/// Reads Llama-shaped weights ("model.layers.{l}.self_attn.q_proj.weight", ...).
ModelWeights loadLlamaLike(const WeightSource& s, const ModelConfig& c);

}  // namespace mechscope::families
