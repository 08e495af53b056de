#include "core/synth/synth_model.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <fstream>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/family_spec.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/safetensors/safetensors_file.hpp"

namespace mechscope::synth {
namespace {

using json = nlohmann::json;

/// Shape of a transformer in family-neutral terms; each family's config keys are derived from it.
struct Shape {
  int layers, dModel, heads, kvHeads, dHead, dMlp, vocab, ctx;
  bool tied;
};

const std::map<std::string, std::pair<std::string, Shape>>& realisticPresets() {
  static const std::map<std::string, std::pair<std::string, Shape>> presets = {
      {"gpt2-small", {"gpt2", {12, 768, 12, 12, 64, 3072, 50257, 1024, true}}},
      {"qwen3-0.6b", {"qwen3", {28, 1024, 16, 8, 128, 3072, 151936, 131072, true}}},
      {"llama-1b", {"llama", {16, 2048, 32, 8, 64, 8192, 128256, 131072, true}}},  // Llama-3.2-1B geometry
      {"llama-7b", {"llama", {32, 4096, 32, 32, 128, 11008, 32000, 4096, false}}},  // Llama-2-7B geometry (issue #24's patching)
  };
  return presets;
}

// Tiny: long context so the CPU long-input benchmarks (4K–64K tokens) fit every family.
constexpr Shape kTiny{2, 64, 4, 2, 16, 160, 1000, 65536, false};

json configFor(const std::string& family, const Shape& s) {
  if (family == "gpt2")
    return {{"architectures", {"GPT2LMHeadModel"}}, {"model_type", "gpt2"}, {"n_layer", s.layers},
            {"n_embd", s.dModel}, {"n_head", s.heads}, {"n_inner", s.dMlp}, {"vocab_size", s.vocab},
            {"n_positions", s.ctx}, {"activation_function", "gelu_new"}, {"layer_norm_epsilon", 1e-5},
            {"tie_word_embeddings", s.tied}, {"bos_token_id", 0}, {"eos_token_id", 0}};
  if (family == "gpt_neox")
    return {{"architectures", {"GPTNeoXForCausalLM"}}, {"model_type", "gpt_neox"}, {"num_hidden_layers", s.layers},
            {"hidden_size", s.dModel}, {"num_attention_heads", s.heads}, {"intermediate_size", s.dMlp},
            {"vocab_size", s.vocab}, {"max_position_embeddings", s.ctx}, {"rotary_pct", 0.25},
            {"rotary_emb_base", 10000}, {"use_parallel_residual", true}, {"hidden_act", "gelu"},
            {"layer_norm_eps", 1e-5}, {"tie_word_embeddings", s.tied}, {"bos_token_id", 0}, {"eos_token_id", 0}};
  json c = {{"model_type", family}, {"num_hidden_layers", s.layers}, {"hidden_size", s.dModel},
            {"num_attention_heads", s.heads}, {"num_key_value_heads", s.kvHeads}, {"head_dim", s.dHead},
            {"intermediate_size", s.dMlp}, {"vocab_size", s.vocab}, {"max_position_embeddings", s.ctx},
            {"hidden_act", "silu"}, {"rms_norm_eps", 1e-6}, {"tie_word_embeddings", s.tied},
            {"bos_token_id", 0}, {"eos_token_id", 0}};
  if (family == "llama") {
    c["architectures"] = {"LlamaForCausalLM"};
    c["rope_theta"] = 500000.0;
    c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 32.0}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  } else if (family == "mistral") {
    c["architectures"] = {"MistralForCausalLM"};
    c["rope_theta"] = 1e6;
    c["sliding_window"] = nullptr;
  } else if (family == "qwen2") {
    c["architectures"] = {"Qwen2ForCausalLM"};
    c["rope_theta"] = 1e6;
    c.erase("head_dim");
  } else if (family == "qwen3") {
    c["architectures"] = {"Qwen3ForCausalLM"};
    c["rope_theta"] = 1e6;
  } else if (family == "phi3") {
    // Phi-3-mini-128k's shape of rotary: longrope with short factors 1 and long factors growing to 4.
    c["architectures"] = {"Phi3ForCausalLM"};
    c.erase("head_dim");
    const int half = s.dModel / s.heads / 2;
    std::vector<double> shortF(static_cast<size_t>(half), 1.0), longF;
    for (int i = 0; i < half; ++i) longF.push_back(1.0 + 3.0 * i / std::max(1, half - 1));
    c["original_max_position_embeddings"] = std::min(4096, s.ctx);
    c["rope_parameters"] = {{"rope_type", "longrope"}, {"rope_theta", 10000.0}, {"short_factor", shortF},
                            {"long_factor", longF}, {"original_max_position_embeddings", std::min(4096, s.ctx)}};
    c["sliding_window"] = nullptr;
  } else if (family == "olmo2") {
    c["architectures"] = {"Olmo2ForCausalLM"};
    c["rope_theta"] = 500000.0;
    c.erase("head_dim");
  } else if (family == "gemma2" || family == "gemma3_text") {
    // Alternating sliding/full layers (Gemma 3: five sliding per full one, the last layer full).
    const bool g3 = family == "gemma3_text";
    c["architectures"] = {g3 ? "Gemma3ForCausalLM" : "Gemma2ForCausalLM"};
    c.erase("hidden_act");
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["query_pre_attn_scalar"] = s.dHead;
    c["sliding_window"] = std::min(4096, s.ctx / 2);
    json types = json::array();
    for (int l = 0; l < s.layers; ++l)
      types.push_back((g3 ? (l + 1) % 6 == 0 || l + 1 == s.layers : (l + 1) % 2 == 0) ? "full_attention" : "sliding_attention");
    c["layer_types"] = types;
    if (g3) {
      c["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}, {"rope_theta", 1e6}}},
                              {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 1e4}}}};
    } else {
      c["rope_theta"] = 10000.0;
      c["attn_logit_softcapping"] = 50.0;
      c["final_logit_softcapping"] = 30.0;
    }
  } else if (family == "mixtral" || family == "qwen2_moe" || family == "qwen3_moe") {
    // 4 experts, top 2; the expert size is intermediate_size (Mixtral) or moe_intermediate_size (Qwen).
    const bool qwen = family != "mixtral";
    c["architectures"] = {family == "mixtral" ? "MixtralForCausalLM" : family == "qwen2_moe" ? "Qwen2MoeForCausalLM" : "Qwen3MoeForCausalLM"};
    c["rope_theta"] = 1e6;
    c["num_experts_per_tok"] = 2;
    c[qwen ? "num_experts" : "num_local_experts"] = 4;
    if (qwen) {
      c["moe_intermediate_size"] = s.dMlp / 4;
      c["norm_topk_prob"] = family == "qwen3_moe";
      c["decoder_sparse_step"] = 1;
      c["mlp_only_layers"] = json::array();
    }
    if (family == "qwen2_moe") c["shared_expert_intermediate_size"] = s.dMlp / 2;
  } else if (family == "gpt_oss") {
    // Sliding and full layers alternating, learned sinks, YaRN, 4 biased experts top 2.
    c["architectures"] = {"GptOssForCausalLM"};
    c["attention_bias"] = true;
    c["num_local_experts"] = 4;
    c["num_experts_per_tok"] = 2;
    c["sliding_window"] = std::min(128, s.ctx / 2);
    json types = json::array();
    for (int l = 0; l < s.layers; ++l) types.push_back(l % 2 == 0 ? "sliding_attention" : "full_attention");
    c["layer_types"] = types;
    c["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 150000.0}, {"factor", 32.0}, {"beta_fast", 32.0},
                            {"beta_slow", 1.0}, {"original_max_position_embeddings", std::min(4096, s.ctx)}, {"truncate", false}};
  } else {
    throw InputError(fmt::format("synth: unknown family '{}' (supported: {})", family, supportedModelTypes()));
  }
  return c;
}

}  // namespace

std::vector<std::string> presetNames() {
  std::vector<std::string> names{"tiny"};
  for (const auto& [name, v] : realisticPresets()) names.push_back(name);
  return names;
}

json presetConfig(const std::string& family, const std::string& preset) {
  if (preset == "tiny") {
    Shape s = kTiny;
    if (family == "gpt2" || family == "gpt_neox") s.kvHeads = s.heads;  // no GQA in these families
    return configFor(family, s);
  }
  const auto it = realisticPresets().find(preset);
  if (it == realisticPresets().end())
    throw InputError(fmt::format("synth: unknown preset '{}' (known: tiny, gpt2-small, qwen3-0.6b, llama-1b, llama-7b)", preset));
  if (it->second.first != family)
    throw InputError(fmt::format("synth: preset '{}' is a {} shape, not {}", preset, it->second.first, family));
  return configFor(family, it->second.second);
}

int64_t writeSynthFolder(const std::filesystem::path& dir, const std::string& family, const std::string& preset,
                         uint64_t seed, const std::string& dtypeName) {
  const at::ScalarType dtype = parseDtype(dtypeName);
  if (dtype != at::kFloat && dtype != at::kBFloat16)
    throw InputError(fmt::format("synth: --dtype {} not supported (fp32 or bf16)", dtypeName));
  json cfgJson = presetConfig(family, preset);
  cfgJson["torch_dtype"] = dtype == at::kFloat ? "float32" : "bfloat16";
  const ModelConfig cfg = ModelConfig::fromJson(cfgJson, "synth config");
  const FamilySpec* spec = findFamily(cfg.modelType);
  if (!spec) throw InputError(fmt::format("synth: unknown family '{}'", family));

  auto gen = at::detail::createCPUGenerator(seed);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  int64_t params = 0;
  auto factory = [&](const std::string& name, const std::vector<int64_t>& shape) {
    at::Tensor t;
    const bool isNormWeight = shape.size() == 1 && name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0;
    if (shape.size() >= 2) t = at::empty(shape, at::kFloat).normal_(0.0, 0.02, gen);
    else if (isNormWeight) t = at::ones(shape, at::kFloat);
    else t = at::zeros(shape, at::kFloat);
    t = t.to(dtype);
    tensors.emplace_back(name, t);
    params += t.numel();
    return t;
  };
  const WeightSource source(factory, dtype);
  (void)spec->loadWeights(source, cfg);

  std::filesystem::create_directories(dir);
  writeSafetensors(dir / "model.safetensors", tensors, {{"format", "pt"}, {"mechscope_synth", preset}});
  std::ofstream out(dir / "config.json");
  out << cfgJson.dump(2) << '\n';
  if (!out) throw InputError(fmt::format("{}: cannot write config.json", dir.string()));
  return params;
}

}  // namespace mechscope::synth
