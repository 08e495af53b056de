#include "core/model/families/gemma_like.hpp"

#include <ATen/ATen.h>

#include <cmath>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope::families {
namespace {

/// A soft-cap: absent → `absent` (HF's default), null → off (0), else the number.
double softcapOf(const ConfigReader& r, const char* key, double absent) {
  auto it = r.json().find(key);
  if (it == r.json().end()) return absent;
  if (it->is_null()) return 0.0;
  return r.optDouble({key}, absent);
}

/// HF Gemma RMSNorm's scale 1 + w, in fp32 (fp64 for fp64 runs) like HF's `1.0 + weight.float()`, from the
/// weight as the model's dtype holds it.
at::Tensor onePlus(const WeightSource& s, const std::string& name, int64_t n) {
  const at::ScalarType t = s.dtype() == at::kDouble ? at::kDouble : at::kFloat;
  return s.placeKeepingDtype(s.getCpu(name, {n}).to(s.dtype()).to(t).add(1.0));
}

}  // namespace

void parseGemmaLike(const ConfigReader& r, ModelConfig& c, const GemmaFlags& f) {
  DecoderShapeDefaults shape = f.shape;
  if (shape.dHead == 0) shape.dHead = 256;  // Gemma's head_dim default
  parseDecoderShape(r, c, shape);
  parseRmsGatedRotary(r, c, {"hidden_activation", "hidden_act"}, "gelu_pytorch_tanh");
  c.normScaleFp32 = true;
  c.attnQkvBias = c.attnOutBias = r.optBool({"attention_bias"}, false);
  c.qkNorm = f.qkNorm;
  c.postAttnNorm = c.postMlpNorm = true;
  c.embedScale = std::sqrt(static_cast<double>(c.dModel));
  c.queryPreAttnScalar = r.optDouble({"query_pre_attn_scalar"}, 256.0);
  c.attnSoftcap = softcapOf(r, "attn_logit_softcapping", f.attnSoftcapDefault);
  c.finalSoftcap = softcapOf(r, "final_logit_softcapping", f.finalSoftcapDefault);
  c.tiedEmbeddings = r.optBool({"tie_word_embeddings"}, true);
  if (r.optBool({"use_bidirectional_attention"}, false))
    throw UnsupportedError(fmt::format("{}: use_bidirectional_attention=true (an encoder, not a causal LM) is not supported", r.source()));

  // Sliding and full layers: `layer_types` (transformers ≥ 4.53), else HF's default pattern.
  // Absent: HF's Gemma 2/3 default window, 4096; null: sliding layers see everything.
  const int window = r.json().contains("sliding_window") ? static_cast<int>(r.optInt({"sliding_window"}).value_or(0)) : 4096;
  if (window < 0) throw InputError(fmt::format("{}: sliding_window {} must be ≥ 0", r.source(), window));
  c.layerWindows.assign(static_cast<size_t>(std::max(c.nLayers, 0)), 0);
  auto types = r.json().find("layer_types");
  if (types != r.json().end() && !types->is_null()) {
    if (!types->is_array() || static_cast<int>(types->size()) != c.nLayers)
      throw InputError(fmt::format("{}: layer_types should list {} layer types, found {}", r.source(), c.nLayers, types->dump()));
    for (int l = 0; l < c.nLayers; ++l) {
      const auto& t = (*types)[static_cast<size_t>(l)];
      const std::string name = t.is_string() ? t.get<std::string>() : t.dump();
      if (name == "sliding_attention") c.layerWindows[static_cast<size_t>(l)] = window;
      else if (name != "full_attention")
        throw UnsupportedError(fmt::format("{}: layer_types[{}] = '{}' is not supported (sliding_attention, full_attention)",
                                           r.source(), l, name));
    }
  } else {
    const int pattern = static_cast<int>(r.optInt({"sliding_window_pattern", "_sliding_window_pattern"}).value_or(f.slidingPattern));
    for (int l = 0; l < c.nLayers; ++l)
      if (pattern <= 0 || (l + 1) % pattern != 0) c.layerWindows[static_cast<size_t>(l)] = window;
  }
  r.readSpecialTokens(c);
}

ModelWeights loadGemmaLike(const WeightSource& s, const ModelConfig& c) {
  // Text-only checkpoints: "model."; Gemma 3's multimodal ones: "language_model.model." (transformers < 5)
  // or "model.language_model." (≥ 5); the vision tower is not read.
  std::string p;
  for (const char* cand : {"model.", "model.language_model.", "language_model.model."})
    if (s.has(std::string(cand) + "embed_tokens.weight")) {
      p = cand;
      break;
    }
  const int64_t d = c.dModel;
  return loadDecoderStack(
      s, c, p,
      [&](const std::string& b, int) {
        LayerWeights L;
        L.ln1W = onePlus(s, b + "input_layernorm.weight", d);
        loadAttentionProjections(s, c, b, L);
        if (c.qkNorm) loadQkNorms(s, b, c.dHead, c.dHead, L, onePlus);
        L.ln1PostW = onePlus(s, b + "post_attention_layernorm.weight", d);
        L.ln2W = onePlus(s, b + "pre_feedforward_layernorm.weight", d);
        loadGatedMlp(s, c, b, L);
        L.ln2PostW = onePlus(s, b + "post_feedforward_layernorm.weight", d);
        return L;
      },
      onePlus);
}

}  // namespace mechscope::families
