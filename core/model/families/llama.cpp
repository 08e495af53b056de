// Llama 1/2/3: RMSNorm, SwiGLU, rotary (rope_scaling linear / llama3), GQA, optional attention_bias.
#include "core/model/families/llama_like.hpp"

namespace mechscope {

const FamilySpec& llamaFamily() {
  static const FamilySpec spec{
      "llama", "Llama 1/2/3 (RMSNorm, SwiGLU, rotary with linear/llama3 scaling, GQA)",
      families::llamaLikeParser(families::LlamaFlags{}), families::loadLlamaLike};
  return spec;
}

}  // namespace mechscope
