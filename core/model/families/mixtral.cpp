// Mixtral: Mistral-shaped attention (GQA, optional sliding window) with a mixture of experts in every
// layer: softmax over the router logits, top-k renormalised to sum 1, SwiGLU experts w1 (gate), w3 (up),
// w2 (down) under "block_sparse_moe".
#include <fmt/format.h>

#include "core/model/families/common_loaders.hpp"
#include "core/model/families/llama_like.hpp"
#include "core/model/families/moe_like.hpp"

namespace mechscope {

const FamilySpec& mixtralFamily() {
  static const FamilySpec spec{"mixtral", "Mixtral (top-k mixture of SwiGLU experts, renormalised; GQA, sliding window)",
                               [](const ConfigReader& r, ModelConfig& c) {
                                 families::parseLlamaLike(r, c, families::slidingWindowFlags());
                                 families::parseMoe(r, c, c.dMlp);
                                 c.moe.normTopK = true;
                               },
                               [](const WeightSource& s, const ModelConfig& c) {
                                 ModelWeights w = families::loadLlamaLike(s, c);
                                 const std::string p = families::decoderPrefix(s);
                                 for (int l = 0; l < c.nLayers; ++l)
                                   if (c.isMoeLayer(l))
                                     w.layers[static_cast<size_t>(l)].moe = families::loadSeparateExperts(
                                         s, c, fmt::format("{}layers.{}.block_sparse_moe.", p, l), "gate", {"w1", "w3", "w2"});
                                 return w;
                               }};
  return spec;
}

}  // namespace mechscope
