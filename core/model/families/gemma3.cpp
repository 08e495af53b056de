// Gemma 3 (text): Gemma 2's block without soft-caps by default, plus per-head (1 + w) q/k norms and a
// rotary per layer type (global θ 1e6, possibly scaled; local θ 1e4 on the sliding layers). model_type
// "gemma3_text" (Gemma3ForCausalLM), or "gemma3" whose config.json nests the text model in text_config:
// only the language model of such a multimodal checkpoint is loaded (the vision tower is ignored).
#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/families/gemma_like.hpp"

namespace mechscope {
namespace {

families::GemmaFlags gemma3Flags() {
  families::GemmaFlags f;  // Gemma3TextConfig's defaults (a multimodal text_config omits most keys)
  f.qkNorm = true;
  f.slidingPattern = 6;
  f.shape.layers = 26;
  f.shape.dModel = 2304;
  f.shape.dMlp = 9216;
  f.shape.heads = 8;
  f.shape.kvHeads = 4;
  f.shape.vocab = 262208;
  f.shape.ctx = 131072;
  return f;
}

/// Global and local rotary: rope_parameters {"full_attention": …, "sliding_attention": …} (transformers ≥ 5),
/// else rope_theta + rope_scaling for the global layers and rope_local_base_freq for the sliding ones.
void readGemma3Rope(const ConfigReader& r, ModelConfig& c) {
  c.rotaryDim = c.dHead;
  auto params = r.json().find("rope_parameters");
  if (params != r.json().end() && params->is_object() && params->contains("full_attention")) {
    const LayerRope global = r.ropeOf(params->at("full_attention"), "rope_parameters.full_attention", c.rotaryDim, c.nCtx, 1e6);
    c.ropeTheta = global.theta;
    c.ropeScaling = global.scaling;
    c.slidingRope = params->contains("sliding_attention")
                        ? r.ropeOf(params->at("sliding_attention"), "rope_parameters.sliding_attention", c.rotaryDim, c.nCtx, 1e4)
                        : global;
  } else {
    r.readRope(c, 1e6, 1.0);
    LayerRope local;
    local.theta = r.optDouble({"rope_local_base_freq"}, 1e4);
    c.slidingRope = local;
  }
}

void parseGemma3Text(const ConfigReader& r, ModelConfig& c) {
  families::parseGemmaLike(r, c, gemma3Flags());
  readGemma3Rope(r, c);
}

/// model_type "gemma3": the text model's keys are under text_config.
void parseGemma3Multimodal(const ConfigReader& r, ModelConfig& c) {
  auto text = r.json().find("text_config");
  if (text == r.json().end() || !text->is_object())
    throw UnsupportedError(fmt::format("{}: model_type gemma3 without a text_config object is not supported (only the "
                                       "language model of Gemma 3 is)", r.source()));
  const ConfigReader sub(*text, r.source() + " (text_config)");
  parseGemma3Text(sub, c);
  // Special tokens usually sit at the top level of a multimodal config.
  if (!c.bosTokenId && c.eosTokenIds.empty()) r.readSpecialTokens(c);
}

}  // namespace

const FamilySpec& gemma3TextFamily() {
  static const FamilySpec spec{"gemma3_text",
                               "Gemma 3 text (Gemma 2's block, per-head (1 + w) q/k norms, local/global rotary, 5:1 sliding layers)",
                               parseGemma3Text, families::loadGemmaLike};
  return spec;
}

const FamilySpec& gemma3Family() {
  static const FamilySpec spec{"gemma3", "Gemma 3 multimodal config: its text model only (text_config)",
                               parseGemma3Multimodal, families::loadGemmaLike};
  return spec;
}

}  // namespace mechscope
