// gpt-oss: Llama-shaped attention with biases on q/k/v/o, a learned sink logit per head (one more softmax
// column that takes probability mass and has no value), sliding and full layers alternating
// (`layer_types`), YaRN rotary, and a mixture of experts in every layer: a biased router, top-k logits
// then softmax over those k, experts with fused interleaved gate/up (gate = even rows, up = odd), biases,
// and the clamped SwiGLU (up + 1) · gate · σ(1.702 · gate). Experts are stored stacked as
// [experts, in, out]; each expert's weights are views of that tensor.
#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/families/common_loaders.hpp"
#include "core/model/families/llama_like.hpp"
#include "core/model/families/moe_like.hpp"

namespace mechscope {

namespace {

/// `layer_types` ("sliding_attention" / "full_attention" per layer) → ModelConfig::layerWindows.
void readGptOssLayerTypes(const ConfigReader& r, ModelConfig& c) {
  const auto window = r.optInt({"sliding_window"});
  auto it = r.json().find("layer_types");
  if (it == r.json().end() || it->is_null()) {
    if (window) c.slidingWindow = static_cast<int>(*window);
    return;
  }
  if (!it->is_array() || static_cast<int>(it->size()) != c.nLayers)
    throw InputError(fmt::format("{}: layer_types should list one type per layer ({})", r.source(), c.nLayers));
  for (const auto& t : *it) {
    const std::string type = t.is_string() ? t.get<std::string>() : t.dump();
    if (type == "full_attention") c.layerWindows.push_back(0);
    else if (type == "sliding_attention") {
      if (!window || *window <= 0)
        throw InputError(fmt::format("{}: layer_types has sliding_attention but sliding_window is not set", r.source()));
      c.layerWindows.push_back(static_cast<int>(*window));
    } else {
      throw UnsupportedError(fmt::format("{}: layer type '{}' is not supported (sliding_attention, full_attention)", r.source(), type));
    }
  }
}

void parseGptOss(const ConfigReader& r, ModelConfig& c) {
  families::LlamaFlags f;  // attention_bias covers q/k/v and o_proj
  families::parseLlamaLike(r, c, f);
  c.attnSinks = true;
  c.normScaleFp32 = true;  // HF's GptOssRMSNorm multiplies the weight in fp32, then casts
  readGptOssLayerTypes(r, c);
  families::parseMoe(r, c, c.dMlp);
  c.moe.order = RouterOrder::TopKThenSoftmax;
  c.moe.routerBias = true;
  c.moe.expertBias = true;
  c.moe.activation = ExpertActivation::ClampedSwiglu;
  c.moe.swigluLimit = r.optDouble({"swiglu_limit"}, 7.0);
}

ModelWeights loadGptOss(const WeightSource& s, const ModelConfig& c) {
  ModelWeights w = families::loadLlamaLike(s, c);
  const std::string p = families::decoderPrefix(s);
  const int64_t d = c.dModel, m = c.moe.dExpert, E = c.moe.nExperts;
  for (int l = 0; l < c.nLayers; ++l) {
    const std::string b = fmt::format("{}layers.{}.", p, l);
    LayerWeights& L = w.layers[static_cast<size_t>(l)];
    L.sinks = s.get(b + "self_attn.sinks", {c.nHeads});
    if (!c.isMoeLayer(l)) continue;
    MoeWeights moe;
    moe.wRouter = s.get(b + "mlp.router.weight", {E, d});
    moe.bRouter = s.get(b + "mlp.router.bias", {E});
    const at::Tensor gateUp = s.get(b + "mlp.experts.gate_up_proj", {E, d, 2 * m});  // [expert, d_model, 2·d_expert]
    const at::Tensor gateUpBias = s.get(b + "mlp.experts.gate_up_proj_bias", {E, 2 * m});
    const at::Tensor down = s.get(b + "mlp.experts.down_proj", {E, m, d});  // [expert, d_expert, d_model]
    const at::Tensor downBias = s.get(b + "mlp.experts.down_proj_bias", {E, d});
    for (int64_t e = 0; e < E; ++e) {
      ExpertWeights x;
      x.wGateUp = gateUp.select(0, e).t();  // [2·d_expert, d_model] view
      x.bGateUp = gateUpBias.select(0, e);
      x.wOut = down.select(0, e).t();  // [d_model, d_expert] view
      x.bOut = downBias.select(0, e);
      moe.experts.push_back(std::move(x));
    }
    L.moe = std::move(moe);
  }
  return w;
}

}  // namespace

const FamilySpec& gptOssFamily() {
  static const FamilySpec spec{"gpt_oss", "gpt-oss (learned attention sinks, alternating sliding windows, YaRN, biased top-k MoE)",
                               parseGptOss, loadGptOss};
  return spec;
}

}  // namespace mechscope
