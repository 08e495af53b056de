// Qwen2 / Qwen2.5: Llama-shaped with q/k/v biases (no o_proj bias), GQA, often tied embeddings.
#include "core/model/families/llama_like.hpp"

namespace mechscope {

const FamilySpec& qwen2Family() {
  static const FamilySpec spec{"qwen2", "Qwen2 / Qwen2.5 (Llama-shaped with q/k/v biases, GQA)",
                               families::llamaLikeParser(families::qwen2Flags()), families::loadLlamaLike};
  return spec;
}

}  // namespace mechscope
