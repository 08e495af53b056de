#pragma once
// Shared parsing and weight mapping of Gemma 2 and Gemma 3 (text): (1 + w) RMSNorms applied in fp32,
// input / post-attention / pre-feedforward / post-feedforward norms, GeGLU, √d_model embedding scale,
// query_pre_attn_scalar, soft-caps, sliding and full layers (layer_types).
#include "core/model/families/common_loaders.hpp"

namespace mechscope::families {

/// What differs between the Gemma generations (HF's config defaults included).
struct GemmaFlags {
  bool qkNorm = false;           ///< Gemma 3: per-head (1 + w) RMSNorm on q and k before rotary
  double attnSoftcapDefault = 0; ///< attn_logit_softcapping when the key is absent (Gemma 2: 50; null: off)
  double finalSoftcapDefault = 0;///< final_logit_softcapping when absent (Gemma 2: 30)
  int slidingPattern = 2;        ///< without layer_types: layer i slides unless (i + 1) % pattern == 0
  /// HF config defaults of size keys a config may omit (0: the key is required; head_dim: 256). Gemma 3's
  /// text_config inside a multimodal config.json leaves most sizes out.
  DecoderShapeDefaults shape;
};

/// Fills a ModelConfig from a Gemma-shaped config.json, except the rotary (each generation reads its own).
void parseGemmaLike(const ConfigReader& r, ModelConfig& c, const GemmaFlags& flags);
/// Reads Gemma-shaped weights; every norm weight w becomes the scale 1 + w (fp32, fp64 in fp64 runs),
/// as HF's Gemma RMSNorm computes it.
ModelWeights loadGemmaLike(const WeightSource& s, const ModelConfig& c);

}  // namespace mechscope::families
