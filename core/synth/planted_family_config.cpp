#include "core/synth/planted_family_config.hpp"

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope::planted {
namespace {

using json = nlohmann::json;
using S = FamilyShape;

/// The keys every Llama-shaped family shares (GQA: two key/value heads for four query heads).
json decoderBase(const std::string& family, const std::string& architecture) {
  return {{"architectures", {architecture}}, {"model_type", family}, {"num_hidden_layers", S::kLayers},
          {"hidden_size", S::kDModel}, {"num_attention_heads", S::kHeads}, {"num_key_value_heads", S::kHeads / 2},
          {"head_dim", S::kDHead}, {"intermediate_size", S::kMlp}, {"vocab_size", 63},
          {"max_position_embeddings", S::kCtx}, {"hidden_act", "silu"}, {"rms_norm_eps", 1e-6},
          {"tie_word_embeddings", false}, {"bos_token_id", 0}, {"eos_token_id", 0}, {"torch_dtype", "float32"}};
}

/// Layer 0 sliding, layer 1 full attention.
json slidingThenFull() { return json::array({"sliding_attention", "full_attention"}); }

/// Per family: the architecture and its quirks. Rotary bases are chosen so the low-frequency dims that carry
/// content turn by less than 0.05 rad over kMaxPositions (docs/planted-models.md); the families' scalings stay on.
json familyConfig(const std::string& f) {
  if (f == "gpt_neox")
    return {{"architectures", {"GPTNeoXForCausalLM"}}, {"model_type", f}, {"num_hidden_layers", S::kLayers},
            {"hidden_size", S::kDModel}, {"num_attention_heads", S::kHeads}, {"intermediate_size", S::kMlp},
            {"vocab_size", 63}, {"max_position_embeddings", S::kCtx}, {"rotary_pct", 0.25}, {"rotary_emb_base", 10000},
            {"use_parallel_residual", true}, {"hidden_act", "gelu"}, {"layer_norm_eps", 1e-5},
            {"tie_word_embeddings", false}, {"bos_token_id", 0}, {"eos_token_id", 0}, {"torch_dtype", "float32"}};
  json c;
  if (f == "llama") {
    c = decoderBase(f, "LlamaForCausalLM");
    c["rope_theta"] = 500000.0;
    c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 32.0}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  } else if (f == "mistral") {
    c = decoderBase(f, "MistralForCausalLM");
    c["rope_theta"] = 1e6;
    c["sliding_window"] = S::kWindow;
  } else if (f == "qwen2") {
    c = decoderBase(f, "Qwen2ForCausalLM");  // q/k/v biases (zero)
    c.erase("head_dim");
    c["rope_theta"] = 1e6;
  } else if (f == "qwen3") {
    c = decoderBase(f, "Qwen3ForCausalLM");  // per-head q/k RMSNorm
    c["rope_theta"] = 1e6;
  } else if (f == "phi3") {
    // Fused qkv and gate_up, partial rotary (3/4 of d_head, as Phi-4-mini) and LongRope whose attention
    // factor (√(1 + ln 4 / ln 4096)) scales the rotated dims.
    c = decoderBase(f, "Phi3ForCausalLM");
    c.erase("head_dim");
    const int half = S::kDHead * 3 / 4 / 2;
    std::vector<double> shortF(static_cast<size_t>(half), 1.0), longF;
    for (int i = 0; i < half; ++i) longF.push_back(1.0 + 3.0 * i / (half - 1));
    c["max_position_embeddings"] = 4 * S::kCtx;
    c["original_max_position_embeddings"] = S::kCtx;
    c["rope_parameters"] = {{"rope_type", "longrope"}, {"rope_theta", 1e6}, {"partial_rotary_factor", 0.75},
                            {"short_factor", shortF}, {"long_factor", longF}, {"original_max_position_embeddings", S::kCtx}};
    c["sliding_window"] = nullptr;
  } else if (f == "olmo2") {
    c = decoderBase(f, "Olmo2ForCausalLM");  // no pre-norms, post-norms, q/k norm over the whole projection
    c.erase("head_dim");
    c["rope_theta"] = 500000.0;
  } else if (f == "gemma2" || f == "gemma3_text") {
    const bool g3 = f == "gemma3_text";
    c = decoderBase(f, g3 ? "Gemma3ForCausalLM" : "Gemma2ForCausalLM");
    c.erase("hidden_act");
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["query_pre_attn_scalar"] = 256;  // scale 1/16, not 1/√d_head
    c["sliding_window"] = S::kWindow;
    c["layer_types"] = slidingThenFull();
    if (g3) {
      c["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}, {"rope_theta", 1e6}}},
                              {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 1e4}}}};
    } else {
      c["rope_theta"] = 1e6;
      c["attn_logit_softcapping"] = 50.0;
      c["final_logit_softcapping"] = 30.0;
    }
  } else if (f == "mixtral" || f == "qwen2_moe" || f == "qwen3_moe") {
    const bool qwen = f != "mixtral";
    c = decoderBase(f, f == "mixtral" ? "MixtralForCausalLM" : f == "qwen2_moe" ? "Qwen2MoeForCausalLM" : "Qwen3MoeForCausalLM");
    if (f == "qwen2_moe") c.erase("head_dim");
    c["rope_theta"] = 1e6;
    c["num_experts_per_tok"] = 2;
    c[qwen ? "num_experts" : "num_local_experts"] = 4;
    if (qwen) {
      c["moe_intermediate_size"] = S::kMlp / 2;
      c["norm_topk_prob"] = f == "qwen3_moe";
      c["decoder_sparse_step"] = 1;
      c["mlp_only_layers"] = json::array();
    }
    if (f == "qwen2_moe") c["shared_expert_intermediate_size"] = S::kMlp;
  } else if (f == "gpt_oss") {
    c = decoderBase(f, "GptOssForCausalLM");
    c["attention_bias"] = true;
    c["num_local_experts"] = 4;
    c["num_experts_per_tok"] = 2;
    c["sliding_window"] = S::kWindow / 2;
    c["layer_types"] = slidingThenFull();
    c["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 150000.0}, {"factor", 32.0}, {"beta_fast", 32.0},
                            {"beta_slow", 1.0}, {"original_max_position_embeddings", S::kCtx}, {"truncate", false}};
  } else {
    throw InputError(fmt::format("plant: unknown family '{}' (known: {})", f, fmt::join(plantedFamilies(), ", ")));
  }
  return c;
}

}  // namespace

std::vector<std::string> plantedFamilies() {
  return {"gpt2", "gpt_neox", "llama", "mistral", "qwen2", "qwen3", "phi3", "olmo2", "gemma2", "gemma3_text",
          "mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss"};
}

nlohmann::json plantedFamilyConfig(const std::string& family) { return familyConfig(family); }

}  // namespace mechscope::planted
