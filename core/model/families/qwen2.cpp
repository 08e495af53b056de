// Qwen2 / Qwen2.5: Llama-shaped with q/k/v biases (no o_proj bias), GQA, often tied embeddings.
#include "core/model/families/llama_like.hpp"

namespace mechscope {

const FamilySpec& qwen2Family() {
  static const FamilySpec spec{"qwen2", "Qwen2 / Qwen2.5 (Llama-shaped with q/k/v biases, GQA)",
                               [](const ConfigReader& r, ModelConfig& c) {
                                 families::LlamaFlags f;
                                 f.qkvBiasDefault = true;
                                 f.outBiasFollowsQkv = false;
                                 f.qwenSlidingWindow = true;
                                 families::parseLlamaLike(r, c, f);
                               },
                               families::loadLlamaLike};
  return spec;
}

}  // namespace mechscope
