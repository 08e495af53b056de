// Mistral: Llama-shaped with GQA/MQA and an optional sliding attention window.
#include "core/model/families/llama_like.hpp"

namespace mechscope {

const FamilySpec& mistralFamily() {
  static const FamilySpec spec{"mistral", "Mistral (Llama-shaped, GQA/MQA, optional sliding window)",
                               families::llamaLikeParser(families::slidingWindowFlags()), families::loadLlamaLike};
  return spec;
}

}  // namespace mechscope
