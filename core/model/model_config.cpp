#include "core/model/model_config.hpp"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/common/json_guard.hpp"
#include "core/model/family_spec.hpp"

namespace mechscope {

std::string toString(NormKind kind) { return kind == NormKind::LayerNorm ? "layernorm" : "rmsnorm"; }
std::string toString(Activation act) {
  switch (act) {
    case Activation::GeluNew: return "gelu_new";
    case Activation::Gelu: return "gelu";
    case Activation::Silu: return "silu";
    case Activation::Relu: return "relu";
  }
  return "?";
}
std::string toString(PositionalKind kind) { return kind == PositionalKind::Learned ? "learned" : "rotary"; }
std::string toString(RopeScalingKind kind) {
  switch (kind) {
    case RopeScalingKind::None: return "none";
    case RopeScalingKind::Linear: return "linear";
    case RopeScalingKind::Llama3: return "llama3";
    case RopeScalingKind::LongRope: return "longrope";
    case RopeScalingKind::Yarn: return "yarn";
  }
  return "?";
}

// ---- ConfigReader ---------------------------------------------------------------------------

const nlohmann::json* ConfigReader::find(std::initializer_list<const char*> keys) const {
  for (const char* k : keys) {
    auto it = m_json.find(k);
    if (it != m_json.end() && !it->is_null()) return &*it;
  }
  return nullptr;
}

namespace {
std::string keyList(std::initializer_list<const char*> keys) {
  std::vector<std::string> v;
  for (const char* k : keys) v.push_back(fmt::format("'{}'", k));
  return fmt::format("{}", fmt::join(v, " or "));
}
}  // namespace

namespace {
// Every integer of a config.json (sizes, counts, token ids) fits in 32 bits; larger values would
// silently wrap when narrowed, so they are refused.
constexpr int64_t kMaxConfigInt = std::numeric_limits<int>::max();
}  // namespace

int ConfigReader::requireInt(std::initializer_list<const char*> keys) const {
  const auto* j = find(keys);
  if (!j) throw InputError(fmt::format("{}: missing key {}", m_source, keyList(keys)));
  const auto v = optInt(keys);
  return static_cast<int>(*v);
}

double ConfigReader::optDouble(std::initializer_list<const char*> keys, double fallback) const {
  const auto* j = find(keys);
  if (!j) return fallback;
  if (!j->is_number()) throw InputError(fmt::format("{}: key {} should be a number, found {}", m_source, keyList(keys), j->dump()));
  return j->get<double>();
}

std::optional<int64_t> ConfigReader::optInt(std::initializer_list<const char*> keys) const {
  const auto* j = find(keys);
  if (!j) return std::nullopt;
  // An integral float (2048.0, as some exporters write) is the integer Python would use; 2048.5 is not.
  if (j->is_number_float()) {
    const double d = j->get<double>();
    if (!(std::isfinite(d) && d == std::floor(d) && std::fabs(d) <= static_cast<double>(kMaxConfigInt)))
      throw InputError(fmt::format("{}: key {} should be an integer, found {}", m_source, keyList(keys), j->dump()));
    return static_cast<int64_t>(d);
  }
  if (!j->is_number_integer())
    throw InputError(fmt::format("{}: key {} should be an integer, found {}", m_source, keyList(keys), j->dump()));
  if (j->is_number_unsigned() ? j->get<uint64_t>() > static_cast<uint64_t>(kMaxConfigInt)
                              : (j->get<int64_t>() > kMaxConfigInt || j->get<int64_t>() < -kMaxConfigInt))
    throw InputError(fmt::format("{}: key {} = {} is out of range (|value| ≤ {})", m_source, keyList(keys), j->dump(),
                                 kMaxConfigInt));
  return j->get<int64_t>();
}

bool ConfigReader::optBool(std::initializer_list<const char*> keys, bool fallback) const {
  const auto* j = find(keys);
  if (!j) return fallback;
  if (!j->is_boolean()) throw InputError(fmt::format("{}: key {} should be true/false, found {}", m_source, keyList(keys), j->dump()));
  return j->get<bool>();
}

std::string ConfigReader::optString(std::initializer_list<const char*> keys, const std::string& fallback) const {
  const auto* j = find(keys);
  if (!j) return fallback;
  if (!j->is_string()) throw InputError(fmt::format("{}: key {} should be a string, found {}", m_source, keyList(keys), j->dump()));
  return j->get<std::string>();
}

Activation ConfigReader::activation(const std::string& name) const {
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return Activation::GeluNew;
  if (name == "gelu") return Activation::Gelu;
  if (name == "silu" || name == "swish") return Activation::Silu;
  if (name == "relu") return Activation::Relu;
  throw UnsupportedError(fmt::format("{}: activation '{}' is not supported (gelu_new, gelu_pytorch_tanh, gelu, silu, relu)",
                                     m_source, name));
}

namespace {

double numberOr(const nlohmann::json& o, const char* k, double fallback) {
  auto it = o.find(k);
  return it != o.end() && it->is_number() ? it->get<double>() : fallback;
}

/// LongRope's short_factor / long_factor: one positive divisor per rotary frequency.
std::vector<double> ropeFactorList(const nlohmann::json& s, const char* key, int rotaryDim, const std::string& where) {
  auto it = s.find(key);
  if (it == s.end() || !it->is_array())
    throw InputError(fmt::format("{}: longrope needs '{}' (a list of {} numbers)", where, key, rotaryDim / 2));
  std::vector<double> out;
  for (const auto& x : *it) {
    if (!x.is_number() || !(x.get<double>() > 0.0) || !std::isfinite(x.get<double>()))
      throw InputError(fmt::format("{}: '{}' holds {}, expected positive numbers", where, key, x.dump()));
    out.push_back(x.get<double>());
  }
  if (static_cast<int>(out.size()) != rotaryDim / 2)
    throw InputError(fmt::format("{}: '{}' has {} entries, expected rotary_dim / 2 = {}", where, key, out.size(), rotaryDim / 2));
  return out;
}

/// The scaling of one rope object (`rope_parameters` of transformers ≥ 5 or an older `rope_scaling`).
/// `topOriginal` is a top-level original_max_position_embeddings (Phi-3 keeps one there), 0 if none.
RopeScaling parseRopeScaling(const nlohmann::json& s, const std::string& where, int rotaryDim, int maxPositions,
                             int64_t topOriginal) {
  RopeScaling out;
  std::string type = "default";
  if (auto it = s.find("rope_type"); it != s.end() && it->is_string()) type = it->get<std::string>();
  else if (auto it2 = s.find("type"); it2 != s.end() && it2->is_string()) type = it2->get<std::string>();
  auto original = [&](double fallback) {
    const double orig = numberOr(s, "original_max_position_embeddings", fallback);
    if (!(orig >= 1.0 && orig <= static_cast<double>(kMaxConfigInt)))
      throw InputError(fmt::format("{}: original_max_position_embeddings {} is out of range", where, orig));
    return static_cast<int64_t>(orig);
  };
  if (type == "default") return out;
  if (type == "linear") {
    out.kind = RopeScalingKind::Linear;
    out.factor = numberOr(s, "factor", 1.0);
  } else if (type == "llama3") {
    out.kind = RopeScalingKind::Llama3;
    out.factor = numberOr(s, "factor", 8.0);
    out.lowFreqFactor = numberOr(s, "low_freq_factor", 1.0);
    out.highFreqFactor = numberOr(s, "high_freq_factor", 4.0);
    out.originalMaxPositionEmbeddings = original(8192);
  } else if (type == "longrope") {
    // As HF's _compute_longrope_parameters: factor defaults to max_position_embeddings / original, and
    // the attention factor (cos/sin multiplier) to √(1 + ln factor / ln original) when factor > 1.
    out.kind = RopeScalingKind::LongRope;
    out.originalMaxPositionEmbeddings = original(static_cast<double>(topOriginal > 0 ? topOriginal : maxPositions));
    const double orig = static_cast<double>(out.originalMaxPositionEmbeddings);
    out.factor = numberOr(s, "factor", static_cast<double>(maxPositions) / orig);
    const double defaultAttention =
        out.factor <= 1.0 || orig <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(out.factor) / std::log(orig));
    out.attentionFactor = numberOr(s, "attention_factor", defaultAttention);
    out.shortFactor = ropeFactorList(s, "short_factor", rotaryDim, where);
    out.longFactor = ropeFactorList(s, "long_factor", rotaryDim, where);
  } else if (type == "yarn") {
    // As HF's _compute_yarn_parameters: the ramp between beta_fast and beta_slow rotations over the
    // original context; cos/sin scaled by attention_factor, default 0.1·ln(factor) + 1 (mscale).
    out.kind = RopeScalingKind::Yarn;
    out.factor = numberOr(s, "factor", 1.0);
    out.originalMaxPositionEmbeddings = original(static_cast<double>(maxPositions));
    out.betaFast = numberOr(s, "beta_fast", 32.0);
    out.betaSlow = numberOr(s, "beta_slow", 1.0);
    if (auto it = s.find("truncate"); it != s.end() && it->is_boolean()) out.truncate = it->get<bool>();
    if (s.contains("mscale") || s.contains("mscale_all_dim"))
      throw UnsupportedError(fmt::format("{}: yarn 'mscale' / 'mscale_all_dim' (DeepSeek) are not supported", where));
    out.attentionFactor = numberOr(s, "attention_factor", out.factor <= 1.0 ? 1.0 : 0.1 * std::log(out.factor) + 1.0);
    if (!(out.betaFast > 0.0 && out.betaSlow > 0.0))
      throw InputError(fmt::format("{}: yarn beta_fast {} and beta_slow {} must be positive", where, out.betaFast, out.betaSlow));
  } else {
    throw UnsupportedError(
        fmt::format("{}: rope scaling type '{}' is not supported (default, linear, llama3, longrope, yarn)", where, type));
  }
  if (!(out.factor > 0.0 && std::isfinite(out.factor)))
    throw InputError(fmt::format("{}: rope scaling factor {} must be a positive finite number", where, out.factor));
  return out;
}

}  // namespace

void ConfigReader::readRope(ModelConfig& cfg, double defaultTheta, double defaultPartial) const {
  // transformers >= 5 folds everything into rope_parameters; older configs use rope_theta +
  // rope_scaling (+ rotary_pct / rotary_emb_base for GPT-NeoX).
  const nlohmann::json empty = nlohmann::json::object();
  const auto* params = find({"rope_parameters"});
  const auto* scaling = find({"rope_scaling"});
  const nlohmann::json& p = params && params->is_object() ? *params : empty;
  const nlohmann::json& s = scaling && scaling->is_object() ? *scaling : p;
  cfg.ropeTheta = numberOr(p, "rope_theta", optDouble({"rope_theta", "rotary_emb_base"}, defaultTheta));
  const double partial = numberOr(p, "partial_rotary_factor", optDouble({"partial_rotary_factor", "rotary_pct"}, defaultPartial));
  if (!(partial > 0.0 && partial <= 1.0))  // also NaN: the product below is narrowed to int
    throw InputError(fmt::format("{}: partial_rotary_factor / rotary_pct {} must be in (0, 1]", m_source, partial));
  if (!(cfg.ropeTheta > 0.0 && std::isfinite(cfg.ropeTheta)))
    throw InputError(fmt::format("{}: rope_theta {} must be a positive finite number", m_source, cfg.ropeTheta));
  cfg.rotaryDim = static_cast<int>(cfg.dHead * partial);
  cfg.ropeScaling = parseRopeScaling(s, m_source, cfg.rotaryDim, cfg.nCtx, optInt({"original_max_position_embeddings"}).value_or(0));
}

LayerRope ConfigReader::ropeOf(const nlohmann::json& params, const std::string& where, int rotaryDim, int maxPositions,
                               double defaultTheta) const {
  if (!params.is_object()) throw InputError(fmt::format("{}: {} should be an object, found {}", m_source, where, params.dump()));
  LayerRope r;
  r.theta = numberOr(params, "rope_theta", defaultTheta);
  if (!(r.theta > 0.0 && std::isfinite(r.theta)))
    throw InputError(fmt::format("{}: {} rope_theta {} must be a positive finite number", m_source, where, r.theta));
  r.scaling = parseRopeScaling(params, fmt::format("{} ({})", m_source, where), rotaryDim, maxPositions,
                               optInt({"original_max_position_embeddings"}).value_or(0));
  return r;
}

void ConfigReader::readSpecialTokens(ModelConfig& cfg) const {
  cfg.bosTokenId = optInt({"bos_token_id"});
  cfg.eosTokenIds.clear();
  if (const auto* e = find({"eos_token_id"})) {
    if (e->is_number_integer()) cfg.eosTokenIds.push_back(e->get<int64_t>());
    else if (e->is_array())
      for (const auto& x : *e)
        if (x.is_number_integer()) cfg.eosTokenIds.push_back(x.get<int64_t>());
  }
}

// ---- ModelConfig ----------------------------------------------------------------------------

ModelConfig ModelConfig::fromJsonFile(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) throw InputError(fmt::format("{}: missing (a model folder needs config.json)", path.string()));
  // Size (16 MiB) and depth (64) limits before parsing: see core/common/json_guard.hpp.
  const nlohmann::json j = readJsonFileGuarded(path.string(), kConfigJsonLimits);
  return fromJson(j, path.string());
}

ModelConfig ModelConfig::fromJson(const nlohmann::json& json, const std::string& source) {
  if (!json.is_object()) throw InputError(fmt::format("{}: expected a JSON object", source));
  ConfigReader reader(json, source);
  const std::string type = reader.optString({"model_type"}, "");
  if (type.empty()) throw InputError(fmt::format("{}: missing key 'model_type' (supported: {})", source, supportedModelTypes()));
  const FamilySpec* fam = findFamily(type);
  if (!fam)
    throw InputError(fmt::format("{}: unknown model_type '{}' (supported: {})", source, type, supportedModelTypes()));
  ModelConfig cfg;
  cfg.modelType = type;
  cfg.raw = json;
  fam->parseConfig(reader, cfg);
  cfg.validate(source);
  return cfg;
}

void ModelConfig::validate(const std::string& source) const {
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) throw InputError(fmt::format("{}: inconsistent config: {}", source, what));
  };
  need(nLayers > 0 && dModel > 0 && nHeads > 0 && dHead > 0 && dMlp > 0 && dVocab > 0 && nCtx > 0,
       fmt::format("sizes must be positive (layers {}, d_model {}, heads {}, d_head {}, d_mlp {}, vocab {}, n_ctx {})",
                   nLayers, dModel, nHeads, dHead, dMlp, dVocab, nCtx));
  need(nKvHeads > 0 && nHeads % nKvHeads == 0, fmt::format("n_heads {} is not a multiple of n_kv_heads {}", nHeads, nKvHeads));
  need(positional != PositionalKind::Rotary || (rotaryDim > 0 && rotaryDim <= dHead && rotaryDim % 2 == 0),
       fmt::format("rotary dim {} must be even and in (0, d_head {}]", rotaryDim, dHead));
  need(layerWindows.empty() || static_cast<int>(layerWindows.size()) == nLayers,
       fmt::format("{} per-layer windows for {} layers", layerWindows.size(), nLayers));
  for (int w : layerWindows) need(w >= 0, fmt::format("sliding window {} must be ≥ 0", w));
  need(attnSoftcap >= 0.0 && finalSoftcap >= 0.0 && std::isfinite(attnSoftcap) && std::isfinite(finalSoftcap),
       fmt::format("soft-caps must be ≥ 0 (attention {}, final {})", attnSoftcap, finalSoftcap));
  need(queryPreAttnScalar >= 0.0 && std::isfinite(queryPreAttnScalar),
       fmt::format("query_pre_attn_scalar {} must be positive", queryPreAttnScalar));
  need(embedScale > 0.0 && std::isfinite(embedScale), fmt::format("embedding scale {} must be positive", embedScale));
  if (moe.nExperts > 0) {
    need(moe.topK >= 1 && moe.topK <= moe.nExperts, fmt::format("num_experts_per_tok {} must be in [1, {} experts]", moe.topK, moe.nExperts));
    need(moe.dExpert > 0 && moe.dShared >= 0, fmt::format("expert sizes must be positive (expert {}, shared {})", moe.dExpert, moe.dShared));
    need(static_cast<int>(moe.sparseLayers.size()) == nLayers,
         fmt::format("{} sparse-layer flags for {} layers", moe.sparseLayers.size(), nLayers));
    need(moe.swigluLimit > 0.0 && std::isfinite(moe.swigluLimit), fmt::format("swiglu_limit {} must be positive", moe.swigluLimit));
  }
}

int ModelConfig::windowOf(int layer) const {
  if (!layerWindows.empty()) return layerWindows.at(static_cast<size_t>(layer));
  return slidingWindow.value_or(0);
}

double ModelConfig::attentionScale() const {
  return 1.0 / std::sqrt(queryPreAttnScalar > 0.0 ? queryPreAttnScalar : static_cast<double>(dHead));
}

std::string ModelConfig::summary() const {
  std::ostringstream o;
  o << fmt::format("model_type: {}\n", modelType);
  o << fmt::format("n_layers: {}\nd_model: {}\nn_heads: {}\nn_kv_heads: {}\nd_head: {}\nd_mlp: {}\nd_vocab: {}\nn_ctx: {}\n",
                   nLayers, dModel, nHeads, nKvHeads, dHead, dMlp, dVocab, nCtx);
  o << fmt::format("norm: {} (eps {:g}{})\n", toString(normKind), normEps, normBias ? ", bias" : "");
  o << fmt::format("activation: {}{}\n", toString(activation), gatedMlp ? " (gated)" : "");
  o << fmt::format("positional: {}", toString(positional));
  if (positional == PositionalKind::Rotary) {
    o << fmt::format(" (rotary_dim {}, theta {:g}, scaling {}", rotaryDim, ropeTheta, toString(ropeScaling.kind));
    if (ropeScaling.kind != RopeScalingKind::None) o << fmt::format(" x{:g}", ropeScaling.factor);
    o << ")";
  }
  o << "\n";
  if (positional == PositionalKind::Rotary && ropeScaling.kind == RopeScalingKind::LongRope)
    o << fmt::format("longrope: long factors once a pass reaches past {} positions, attention factor {:g}\n",
                     ropeScaling.originalMaxPositionEmbeddings, ropeScaling.attentionFactor);
  if (positional == PositionalKind::Rotary && slidingRope)
    o << fmt::format("sliding_rope: theta {:g}, scaling {}\n", slidingRope->theta, toString(slidingRope->scaling.kind));
  if (slidingWindow) o << fmt::format("sliding_window: {}\n", *slidingWindow);
  if (!layerWindows.empty()) o << fmt::format("layer_windows: [{}] (0 = full)\n", fmt::join(layerWindows, ", "));
  o << fmt::format("parallel_attn_mlp: {}\nqk_norm: {}{}\nqkv_bias: {}\nattn_out_bias: {}\nmlp_bias: {}\ntied_embeddings: {}\n",
                   parallelAttnMlp, qkNorm, qkNorm && qkNormWhole ? " (whole projection)" : "", attnQkvBias, attnOutBias,
                   mlpBias, tiedEmbeddings);
  o << fmt::format("pre_norms: {}\npost_attn_norm: {}\npost_mlp_norm: {}\n", preNorms, postAttnNorm, postMlpNorm);
  if (normScaleFp32) o << "norm_scale_fp32: true\n";
  if (embedScale != 1.0) o << fmt::format("embed_scale: {:g}\n", embedScale);
  o << fmt::format("attention_scale: {:g}{}\n", attentionScale(), queryPreAttnScalar > 0 ? " (query_pre_attn_scalar)" : "");
  if (attnSoftcap > 0) o << fmt::format("attn_softcap: {:g}\n", attnSoftcap);
  if (finalSoftcap > 0) o << fmt::format("final_softcap: {:g}\n", finalSoftcap);
  if (attnSinks) o << "attn_sinks: learned per head\n";
  if (moe.nExperts > 0) {
    std::vector<int> sparse;
    for (int l = 0; l < nLayers; ++l)
      if (isMoeLayer(l)) sparse.push_back(l);
    o << fmt::format("moe: {} experts of d {}, top {} ({}{}), {}{}{}; sparse layers [{}]\n", moe.nExperts, moe.dExpert, moe.topK,
                     moe.order == RouterOrder::TopKThenSoftmax ? "top-k then softmax" : "softmax then top-k",
                     moe.order == RouterOrder::SoftmaxThenTopK && moe.normTopK ? ", renormalised" : "",
                     moe.activation == ExpertActivation::ClampedSwiglu ? fmt::format("clamped swiglu (limit {:g})", moe.swigluLimit)
                                                                       : std::string("gated"),
                     moe.routerBias ? ", router bias" : "",
                     moe.dShared > 0 ? fmt::format(", shared expert d {}{}", moe.dShared, moe.sharedGate ? " (sigmoid gate)" : "") : "",
                     fmt::join(sparse, ", "));
  }
  o << fmt::format("bos_token_id: {}\neos_token_ids: [{}]\n", bosTokenId ? std::to_string(*bosTokenId) : "none",
                   fmt::join(eosTokenIds, ", "));
  return o.str();
}

}  // namespace mechscope
