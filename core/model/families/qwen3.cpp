// Qwen3: Llama-shaped with per-head RMSNorm on q and k (before rotary) and an explicit head_dim.
#include "core/model/families/llama_like.hpp"

namespace mechscope {

const FamilySpec& qwen3Family() {
  static const FamilySpec spec{"qwen3", "Qwen3 (q_norm/k_norm, explicit head_dim, GQA)",
                               families::llamaLikeParser(families::qwen3Flags()), families::loadLlamaLike};
  return spec;
}

}  // namespace mechscope
