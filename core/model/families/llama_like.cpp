#include "core/model/families/llama_like.hpp"

#include <ATen/ATen.h>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/families/common_loaders.hpp"

namespace mechscope::families {

LlamaFlags slidingWindowFlags() {
  LlamaFlags f;
  f.slidingWindow = true;
  return f;
}

LlamaFlags qwen2Flags() {
  LlamaFlags f;
  f.qkvBiasDefault = true;
  f.outBiasFollowsQkv = false;
  f.qwenSlidingWindow = true;
  return f;
}

LlamaFlags qwen3Flags() {
  LlamaFlags f;
  f.qkNorm = true;
  f.qwenSlidingWindow = true;
  return f;
}

void parseLlamaLike(const ConfigReader& r, ModelConfig& c, const LlamaFlags& flags) {
  parseDecoderShape(r, c);
  parseRmsGatedRotary(r, c, {"hidden_act"}, "silu");
  r.readRope(c, 10000.0, 1.0);
  const bool bias = r.optBool({"attention_bias"}, flags.qkvBiasDefault);
  c.attnQkvBias = flags.qkvBiasDefault || bias;
  c.attnOutBias = flags.outBiasFollowsQkv && bias;
  c.mlpBias = r.optBool({"mlp_bias"}, false);
  c.qkNorm = flags.qkNorm;
  c.tiedEmbeddings = r.optBool({"tie_word_embeddings"}, false);
  if (flags.slidingWindow) {
    if (auto sw = r.optInt({"sliding_window"})) c.slidingWindow = static_cast<int>(*sw);
  }
  if (flags.qwenSlidingWindow && r.optBool({"use_sliding_window"}, false))
    throw UnsupportedError(fmt::format("{}: use_sliding_window=true (per-layer sliding windows) is not supported", r.source()));
  r.readSpecialTokens(c);
}

std::function<void(const ConfigReader&, ModelConfig&)> llamaLikeParser(LlamaFlags flags) {
  return [flags](const ConfigReader& r, ModelConfig& c) { parseLlamaLike(r, c, flags); };
}

ModelWeights loadLlamaLike(const WeightSource& s, const ModelConfig& c) {
  const int64_t d = c.dModel;
  return loadDecoderStack(s, c, decoderPrefix(s), [&](const std::string& b, int l) {
    LayerWeights L;
    L.ln1W = s.get(b + "input_layernorm.weight", {d});
    loadAttentionProjections(s, c, b, L);
    if (c.qkNorm) loadQkNorms(s, b, c.dHead, c.dHead, L);
    L.ln2W = s.get(b + "post_attention_layernorm.weight", {d});
    if (!c.isMoeLayer(l)) loadGatedMlp(s, c, b, L);  // a mixture's weights are the MoE family's to read
    return L;
  });
}

}  // namespace mechscope::families
