// config.json parsing (both transformers 4 and 5 layouts) and rotary frequency scaling against values
// computed with Hugging Face's formulas (numpy float32, transformers' _compute_llama3_parameters).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/common/errors.hpp"
#include "core/model/family_registry.hpp"
#include "core/model/model_config.hpp"
#include "core/model/rotary.hpp"

using namespace mechscope;

namespace {

nlohmann::json llama31() {
  // transformers 4.x layout of Llama-3.1-8B's config.json.
  return nlohmann::json::parse(R"({
    "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-05, "hidden_act": "silu", "rope_theta": 500000.0, "tie_word_embeddings": false,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]})");
}

TEST(Config, Llama31RopeScaling) {
  const ModelConfig c = ModelConfig::fromJson(llama31(), "config.json");
  EXPECT_EQ(c.dHead, 128);
  EXPECT_EQ(c.nKvHeads, 8);
  EXPECT_EQ(c.rotaryDim, 128);
  EXPECT_EQ(c.ropeScaling.kind, RopeScalingKind::Llama3);
  EXPECT_EQ(c.ropeScaling.originalMaxPositionEmbeddings, 8192);
  EXPECT_EQ(c.eosTokenIds, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(*c.bosTokenId, 128000);
  EXPECT_TRUE(c.gatedMlp);
  EXPECT_EQ(c.normKind, NormKind::RMSNorm);
}

TEST(Config, Llama3InvFreqMatchesHuggingFace) {
  ModelConfig c = ModelConfig::fromJson(llama31(), "config.json");
  c.dHead = c.rotaryDim = 64;  // reference values computed for head_dim 64
  const at::Tensor inv = ropeInvFreq(c, at::kCPU);  // [32]
  ASSERT_EQ(inv.size(0), 32);
  const std::vector<std::pair<int, double>> ref = {
      {0, 1.0}, {14, 0.0032114461064338684}, {15, 0.0013718936825171113},  // 15, 16: smoothed band
      {16, 0.0005248460220173001}, {20, 3.428102354519069e-05}, {31, 3.767322880321444e-07}};  // 20, 31: / factor
  for (const auto& [i, v] : ref) EXPECT_NEAR(inv[i].item<double>() / v, 1.0, 1e-5) << "index " << i;
}

TEST(Config, LinearScalingAndLegacyKeys) {
  nlohmann::json j = llama31();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  j["rope_theta"] = 10000.0;
  const ModelConfig c = ModelConfig::fromJson(j, "config.json");
  EXPECT_EQ(c.ropeScaling.kind, RopeScalingKind::Linear);
  ModelConfig plain = c;
  plain.ropeScaling = {};
  EXPECT_TRUE(at::allclose(ropeInvFreq(c, at::kCPU) * 4.0, ropeInvFreq(plain, at::kCPU)));
  // Rotary angle at position 8 with linear x4 equals the unscaled angle at position 2.
  const auto [cos8, sin8] = ropeCosSin(ropeInvFreq(c, at::kCPU), at::full({1, 1}, 8, at::kLong), at::kFloat);
  const auto [cos2, sin2] = ropeCosSin(ropeInvFreq(plain, at::kCPU), at::full({1, 1}, 2, at::kLong), at::kFloat);
  EXPECT_TRUE(at::allclose(cos8, cos2, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(sin8, sin2, 1e-5, 1e-6));
  // GPT-NeoX (transformers 4): rotary_pct and rotary_emb_base.
  const ModelConfig neox = ModelConfig::fromJson(nlohmann::json::parse(R"({
    "model_type": "gpt_neox", "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 6,
    "num_attention_heads": 8, "vocab_size": 50304, "max_position_embeddings": 2048, "rotary_pct": 0.25,
    "rotary_emb_base": 10000, "use_parallel_residual": true, "hidden_act": "gelu", "layer_norm_eps": 1e-5})"),
                                                 "config.json");
  EXPECT_EQ(neox.rotaryDim, 16);
  EXPECT_TRUE(neox.parallelAttnMlp);
  EXPECT_FALSE(neox.tiedEmbeddings);
}

TEST(Config, ErrorsNameTheKey) {
  nlohmann::json j = llama31();
  j.erase("hidden_size");
  try {
    (void)ModelConfig::fromJson(j, "/m/config.json");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/m/config.json: missing key 'hidden_size'"), std::string::npos) << e.what();
  }
  j = llama31();
  j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 4.0}};  // dynamic NTK: not implemented
  EXPECT_THROW((void)ModelConfig::fromJson(j, "config.json"), UnsupportedError);
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"mscale", 1.0}};  // DeepSeek's yarn variant
  EXPECT_THROW((void)ModelConfig::fromJson(j, "config.json"), UnsupportedError);
  j = llama31();
  j["num_key_value_heads"] = 5;
  EXPECT_THROW((void)ModelConfig::fromJson(j, "config.json"), InputError);
  EXPECT_EQ(supportedFamilies().size(), 15u);
}

// Issue 20: a valid config is not refused for the way an exporter wrote its numbers. Integral floats
// (4096.0) are the integers Python uses; a fractional size is still an error naming the key.
TEST(Config, IntegralFloatsAreIntegers) {
  nlohmann::json j = llama31();
  j["hidden_size"] = 4096.0;
  j["num_hidden_layers"] = 32.0;
  j["max_position_embeddings"] = 131072.0;
  const ModelConfig c = ModelConfig::fromJson(j, "config.json");
  EXPECT_EQ(c.dModel, 4096);
  EXPECT_EQ(c.nLayers, 32);
  EXPECT_EQ(c.dHead, 128);
  j["hidden_size"] = 4096.5;
  try {
    (void)ModelConfig::fromJson(j, "/m/config.json");
    FAIL() << "a fractional hidden_size was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'hidden_size' should be an integer"), std::string::npos) << e.what();
  }
}

}  // namespace
