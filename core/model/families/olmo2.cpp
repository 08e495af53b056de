// OLMo-2: Llama-shaped without pre-norms; the attention and MLP outputs are RMS-normed inside the
// residual branch (post_attention_layernorm, post_feedforward_layernorm) before they are added, and q/k
// are RMS-normed over the whole projection (n_heads·d_head, n_kv_heads·d_head) before rotary. Its RMSNorm
// applies the weight in fp32 before casting back.
#include "core/model/families/common_loaders.hpp"
#include "core/model/families/llama_like.hpp"

namespace mechscope {
namespace {

void parseOlmo2(const ConfigReader& r, ModelConfig& c) {
  families::parseLlamaLike(r, c, families::LlamaFlags{});
  c.qkNorm = true;
  c.qkNormWhole = true;
  c.preNorms = false;
  c.postAttnNorm = true;
  c.postMlpNorm = true;
  c.normScaleFp32 = true;
}

ModelWeights loadOlmo2(const WeightSource& s, const ModelConfig& c) {
  const int64_t d = c.dModel;
  return families::loadDecoderStack(s, c, families::decoderPrefix(s), [&](const std::string& b, int) {
    LayerWeights L;  // no pre-norms
    families::loadAttentionProjections(s, c, b, L);
    families::loadQkNorms(s, b, int64_t{c.nHeads} * c.dHead, int64_t{c.nKvHeads} * c.dHead, L);  // whole projection
    L.ln1PostW = s.get(b + "post_attention_layernorm.weight", {d});
    families::loadGatedMlp(s, c, b, L);
    L.ln2PostW = s.get(b + "post_feedforward_layernorm.weight", {d});
    return L;
  });
}

}  // namespace

const FamilySpec& olmo2Family() {
  static const FamilySpec spec{"olmo2", "OLMo-2 (post-norms inside the residual branch, q/k RMSNorm over the whole projection)",
                               parseOlmo2, loadOlmo2};
  return spec;
}

}  // namespace mechscope
