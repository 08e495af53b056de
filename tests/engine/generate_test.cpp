// Generation: the KV-cache path gives exactly the tokens of no-cache recomputation; hooks fire at
// every decode step with one attention row.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/model/generate.hpp"
#include "core/safetensors/safetensors_file.hpp"
#include "engine_test_support.hpp"

using namespace mechscope;

namespace {

class Generate : public ::testing::TestWithParam<std::string> {};

TEST_P(Generate, KvCacheEqualsRecomputation) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, GetParam());
  MECHSCOPE_TEST_DEVICE_OR_SKIP(device);
  auto m = HookedTransformer::load(dir, LoadOptions{device, "fp32"});
  const at::Tensor ids = SafetensorsFile::open(dir / "reference.safetensors").tensor("input_ids")[0].narrow(0, 0, 6);
  std::vector<int64_t> prompt(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + 6);
  GenerateOptions o;
  o.maxNewTokens = 20;
  const auto cached = generate(*m, prompt, o);
  o.useKvCache = false;
  const auto recomputed = generate(*m, prompt, o);
  EXPECT_EQ(cached.generated.size(), 20u);
  EXPECT_EQ(cached.tokens, recomputed.tokens);
  EXPECT_EQ(cached.stopReason, "max_new_tokens");
  // And token by token against a plain argmax loop over full forwards.
  std::vector<int64_t> seq = prompt;
  for (int i = 0; i < 20; ++i) {
    at::Tensor t = at::tensor(at::ArrayRef<int64_t>(seq), at::kLong).unsqueeze(0);
    seq.push_back(m->forward(t).logits[0][-1].argmax().item<int64_t>());
  }
  EXPECT_EQ(cached.tokens, seq);
}

INSTANTIATE_TEST_SUITE_P(Families, Generate, ::testing::Values("gpt2", "pythia", "llama", "mistral", "qwen2", "qwen3", "phi3",
                                                                  "phi3_longrope", "olmo2", "gemma2", "gemma3", "mixtral", "qwen2_moe",
                                                                  "qwen3_moe", "gpt_oss"),
                         [](const auto& info) { return info.param; });

TEST(GenerateSteps, CachedLogitsMatchFullForward) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "qwen2");
  auto m = HookedTransformer::load(dir);
  const at::Tensor ids = SafetensorsFile::open(dir / "reference.safetensors").tensor("input_ids");  // [2, 24]
  const at::Tensor full = m->forward(ids).logits;  // [2, 24, vocab]
  KVCache cache;
  at::Tensor first = m->forwardCached(ids.narrow(1, 0, 16), cache, -1).logits;
  EXPECT_LT((first - full.narrow(1, 0, 16)).abs().max().item<double>(), 1e-4);
  for (int p = 16; p < 24; ++p) {
    at::Tensor step = m->forwardCached(ids.narrow(1, p, 1), cache, p - 16).logits;  // [2, 1, vocab]
    EXPECT_LT((step - full.narrow(1, p, 1)).abs().max().item<double>(), 1e-4) << "position " << p;
  }
  EXPECT_EQ(cache.length, 24);
}

TEST(GenerateSteps, HooksSeeEveryStep) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "llama");
  auto m = HookedTransformer::load(dir);
  std::vector<std::pair<int, std::vector<int64_t>>> rows;
  HookSet hs;
  hs.add("blocks.1.attn.hook_pattern", [&](const at::Tensor& p, const HookContext& c) -> std::optional<at::Tensor> {
    rows.emplace_back(c.step, p.sizes().vec());
    return std::nullopt;
  });
  GenerateOptions o;
  o.maxNewTokens = 5;
  const auto r = generate(*m, {1, 5, 9, 13}, o, &hs);
  ASSERT_EQ(rows.size(), 5u);  // prefill + 4 decode steps (the 5th token needs no forward)
  EXPECT_EQ(rows[0].first, -1);
  EXPECT_EQ(rows[0].second, (std::vector<int64_t>{1, 4, 4, 4}));
  for (int s = 0; s < 4; ++s) {
    EXPECT_EQ(rows[s + 1].first, s);
    EXPECT_EQ(rows[s + 1].second, (std::vector<int64_t>{1, 4, 1, 5 + s}));
  }
  EXPECT_EQ(r.tokens.size(), 9u);
}

TEST(GenerateSteps, StopTokenAndSampling) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "gpt2");
  auto m = HookedTransformer::load(dir);
  GenerateOptions o;
  o.maxNewTokens = 10;
  const auto greedy = generate(*m, {3, 4, 5}, o);
  o.stopTokens = {greedy.generated[2]};
  const auto stopped = generate(*m, {3, 4, 5}, o);
  EXPECT_EQ(stopped.stopReason, "stop_token");
  EXPECT_EQ(stopped.generated.size(), static_cast<std::size_t>(std::find(greedy.generated.begin(), greedy.generated.end(),
                                                                         greedy.generated[2]) - greedy.generated.begin() + 1));
  GenerateOptions s;
  s.greedy = false;
  s.maxNewTokens = 12;
  s.seed = 42;
  s.topK = 50;
  s.topP = 0.9;
  const auto a = generate(*m, {3, 4, 5}, s), b = generate(*m, {3, 4, 5}, s);
  EXPECT_EQ(a.tokens, b.tokens);  // seeded sampling is reproducible
  s.seed = 43;
  s.temperature = 5.0;
  const auto c = generate(*m, {3, 4, 5}, s);
  EXPECT_NE(a.tokens, c.tokens);
  // top_k 1 is greedy.
  s.topK = 1;
  GenerateOptions g12;
  g12.maxNewTokens = 12;
  EXPECT_EQ(generate(*m, {3, 4, 5}, s).generated, generate(*m, {3, 4, 5}, g12).generated);
}

}  // namespace
