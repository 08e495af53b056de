// Retrieval heads: the per-step rule equals an independent computation from materialised patterns
// during generate(); the planted model's retrieval heads are recovered exactly; head masking gives
// uniform rows; needle prompts follow §1.2 (sentence-boundary insertion, find_needle_idx).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <set>

#include "analysis/common/needle.hpp"
#include "analysis/retrieval/retrieval.hpp"
#include "core/common/errors.hpp"
#include "core/model/generate.hpp"
#include "core/synth/planted_tasks.hpp"
#include "core/synth/planted_vocab.hpp"
#include "tests/analysis/test_attention_stats_support.hpp"

namespace mechscope::test {
namespace {

TEST(Retrieval, PerStepRuleEqualsMaterialisedGenerate) {
  for (const std::string fam : {"gpt2", "llama", "qwen3"}) {
    const auto dir = fixtureModel(fam);
    if (dir.empty()) GTEST_SKIP() << "fixtures absent";
    auto m = HookedTransformer::load(dir);
    const int L = m->config().nLayers, H = m->config().nHeads;
    // A prompt that repeats its needle so copying happens: [needle][filler][needle prefix].
    auto ids = randomIds(40, m->config().dVocab, 21);
    for (int i = 0; i < 6; ++i) ids.push_back(ids[static_cast<size_t>(10 + i)]);
    analysis::RetrievalTest t;
    t.ids = ids;
    t.needleStart = 10;
    t.needleEnd = 22;
    analysis::RetrievalDecode d;
    d.maxNewTokens = 8;
    const auto res = analysis::runRetrievalTest(*m, t, d);
    // Independent: generate with hook_pattern (explicit), argmax of each head's last row.
    std::vector<at::Tensor> steps;
    at::Tensor cur = at::zeros({L, H}, at::kLong);
    HookSet hooks;
    hooks.add("blocks.*.attn.hook_pattern", [&](const at::Tensor& p, const HookContext& hc) -> std::optional<at::Tensor> {
      cur[hc.layer] = p[0].select(1, p.size(2) - 1).argmax(-1);
      if (hc.layer == L - 1) steps.push_back(cur.clone());
      return std::nullopt;
    });
    GenerateOptions g;
    g.maxNewTokens = 8;
    const auto gen = generate(*m, ids, g, &hooks);
    ASSERT_EQ(res.generated, gen.generated) << fam;
    ASSERT_EQ(res.argmax.size(0), 8);
    at::Tensor want = at::zeros({L, H}, at::kDouble);
    for (int s = 0; s < 8; ++s) {
      EXPECT_TRUE(at::equal(res.argmax[s], steps[static_cast<size_t>(s)])) << fam << " step " << s;
      for (int l = 0; l < L; ++l)
        for (int h = 0; h < H; ++h) {
          const int64_t j = steps[static_cast<size_t>(s)][l][h].item<int64_t>();
          if (j >= 10 && j < 22 && ids[static_cast<size_t>(j)] == gen.generated[static_cast<size_t>(s)]) want[l][h] += 1.0 / 12.0;
        }
    }
    EXPECT_TRUE(at::allclose(res.score, want)) << fam;
    // --materialize gives the same argmax rows.
    d.materialize = true;
    const auto mat = analysis::runRetrievalTest(*m, t, d);
    EXPECT_TRUE(at::equal(mat.argmax, res.argmax)) << fam;
  }
}

TEST(Retrieval, PlantedRetrievalHeadsRecovered) {
  const auto& f = attnPlanted();
  std::vector<analysis::RetrievalTestResult> tests;
  for (double depth : {0.2, 0.5, 0.8})
    for (uint64_t seed : {1, 2}) {
      const auto np = planted::needlePrompt(120, depth, seed);
      analysis::RetrievalTest t;
      t.ids = planted::toIds(np.words);
      t.needleStart = np.needleStart;
      t.needleEnd = np.needleEnd;
      analysis::RetrievalDecode d;
      d.maxNewTokens = static_cast<int>(np.answer.size());
      auto r = analysis::runRetrievalTest(*f.model, t, d);
      std::vector<int64_t> want;
      for (const auto& w : np.answer) want.push_back(planted::tokenId(w));
      EXPECT_EQ(r.generated, want);
      tests.push_back(std::move(r));
    }
  const auto out = analysis::retrievalToResult(tests, f.model->config().nLayers, f.model->config().nHeads, false);
  std::set<std::pair<int, int>> got, want;
  const auto& score = out.json["retrieval_score"];
  for (size_t l = 0; l < score.size(); ++l)
    for (size_t h = 0; h < score[l].size(); ++h)
      if (score[l][h].get<double>() > 0.1) got.insert({static_cast<int>(l), static_cast<int>(h)});
  for (const auto& e : f.planted["expected"]["retrieval_heads"]) want.insert({e[0].get<int>(), e[1].get<int>()});
  EXPECT_EQ(got, want);
  for (const auto& [l, h] : want) {
    EXPECT_GT(score[static_cast<size_t>(l)][static_cast<size_t>(h)].get<double>(), 0.5);
    EXPECT_DOUBLE_EQ(out.json["activation_frequency"][static_cast<size_t>(l)][static_cast<size_t>(h)].get<double>(), 1.0);
  }
  EXPECT_EQ(out.json["tests"].size(), 6u);

  // Masking the planted heads: their rows become uniform (argmax = key 0) and they score 0.
  const auto np = planted::needlePrompt(120, 0.5, 3);
  analysis::RetrievalTest t;
  t.ids = planted::toIds(np.words);
  t.needleStart = np.needleStart;
  t.needleEnd = np.needleEnd;
  analysis::RetrievalDecode d;
  d.maxNewTokens = static_cast<int>(np.answer.size());
  d.maskedHeads = {want.begin(), want.end()};
  const auto masked = analysis::runRetrievalTest(*f.model, t, d);
  for (const auto& [l, h] : want) {
    EXPECT_EQ(masked.score[l][h].item<double>(), 0.0);
    EXPECT_EQ(masked.argmax.select(1, l).select(1, h).max().item<int64_t>(), 0);
  }
  // Round trip of the resume record.
  const auto back = analysis::retrievalTestFromJson(analysis::retrievalTestToJson(masked, true));
  EXPECT_TRUE(at::equal(back.score, masked.score));
  EXPECT_TRUE(at::equal(back.argmax, masked.argmax));
  EXPECT_EQ(back.generated, masked.generated);
}

TEST(Retrieval, NeedlePromptsFollowTheProtocol) {
  const auto shared = sharedDir();
  if (shared.empty() || !std::filesystem::exists(shared / "fixtures/tokenizers/gpt2/tokenizer.json")) GTEST_SKIP() << "gpt2 tokenizer absent";
  const Tokenizer tok = Tokenizer::fromFile(shared / "fixtures/tokenizers/gpt2/tokenizer.json");
  const auto needles = analysis::readNeedles(std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "resources/haystack/needles.jsonl");
  ASSERT_EQ(needles.size(), 3u);
  const std::string hay = "The river ran cold. Birds sang over the hills. The farmer walked home slowly. ";
  const auto hayIds = tok.encode(hay, false).ids;
  analysis::NeedleLayout layout;
  layout.buffer = 20;
  layout.periodIds = analysis::periodTokenIds(tok);
  ASSERT_FALSE(layout.periodIds.empty());
  for (double depth : {0.0, 44.0, 100.0}) {
    const auto in = analysis::buildNeedleInput(tok, hayIds, needles[1], 300, depth, layout);
    const std::string span = tok.decode({in.ids.begin() + in.needleStart, in.ids.begin() + in.needleEnd});
    EXPECT_NE(span.find("Chaoyang Park"), std::string::npos) << span;
    EXPECT_FALSE(in.spanFromInsertion);
    // Inserted right after a period (or at the start).
    if (in.insertedAt > 0 && depth < 100) {  // depth 100 appends at the end
      EXPECT_NE(std::find(layout.periodIds.begin(), layout.periodIds.end(), in.ids[static_cast<size_t>(in.insertedAt - 1)]),
                layout.periodIds.end());
    }
    const auto q = tok.encode("Based on the content of the book, Question: " + needles[1].question + "\nAnswer:", false).ids;
    EXPECT_EQ(in.ids.size(), 300 - 20 + q.size());
  }
  EXPECT_THROW(analysis::buildNeedleInput(tok, {}, needles[0], 300, 50, layout), InputError);
}

TEST(Retrieval, BadSpanIsAnInputError) {
  const auto& f = attnPlanted();
  analysis::RetrievalTest t;
  t.ids = {0, 5, 6};
  t.needleStart = 2;
  t.needleEnd = 9;
  EXPECT_THROW(analysis::runRetrievalTest(*f.model, t, {}), InputError);
}

}  // namespace
}  // namespace mechscope::test
