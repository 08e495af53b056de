// Gemma 2: (1 + w) RMSNorms in fp32 before and after attention and MLP, GeGLU (gelu tanh), √d_model
// embedding scale, query_pre_attn_scalar, attention soft-cap (before the mask) and final logit soft-cap,
// alternating sliding-window and full layers, tied unembedding.
#include "core/model/families/gemma_like.hpp"

namespace mechscope {

const FamilySpec& gemma2Family() {
  static const FamilySpec spec{
      "gemma2", "Gemma 2 (pre+post (1 + w) RMSNorms, GeGLU, soft-capping, alternating sliding windows)",
      [](const ConfigReader& r, ModelConfig& c) {
        families::GemmaFlags f;
        f.attnSoftcapDefault = 50.0;  // Gemma2Config's defaults
        f.finalSoftcapDefault = 30.0;
        f.slidingPattern = 2;
        families::parseGemmaLike(r, c, f);
        r.readRope(c, 10000.0, 1.0);
      },
      families::loadGemmaLike};
  return spec;
}

}  // namespace mechscope
