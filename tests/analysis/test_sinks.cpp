// Sinks: sink scores and sink rate equal an independent computation from materialised patterns on
// the fixture models; on the planted model the analysis recovers planted.json's sink heads, primary
// sink window and the secondary sink (';', creation layer 8, lifetime 6, MLP cosine 1, norm 84.85).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <map>
#include <set>

#include "analysis/sinks/sinks.hpp"
#include "core/common/errors.hpp"
#include "core/synth/planted_tasks.hpp"
#include "core/synth/planted_vocab.hpp"
#include "tests/analysis/test_attention_stats_support.hpp"

namespace mechscope::test {
namespace {

TEST(Sinks, ScoresEqualMaterialisedPatternsOnFixtures) {
  for (const std::string fam : {"gpt2", "llama", "qwen3", "mistral"}) {
    const auto dir = fixtureModel(fam);
    if (dir.empty()) GTEST_SKIP() << "fixtures absent";
    auto m = HookedTransformer::load(dir);
    const int64_t V = m->config().dVocab;
    const std::vector<std::vector<int64_t>> rows = {randomIds(30, V, 1), randomIds(30, V, 2)};
    for (int64_t b : {0, 2}) {
      analysis::SinksOptions o;
      o.bosPosition = b;
      const auto res = analysis::runSinks(*m, rows, o);
      // Independent: mean over i > b of A[l,h,i,b], averaged over rows; rate = fraction > 0.3.
      at::Tensor want = at::zeros_like(res.sinkScore), rate = at::zeros_like(res.sinkRate);
      for (const auto& ids : rows) {
        const auto pats = materialisedPatterns(*m, ids);
        for (size_t l = 0; l < pats.size(); ++l) {
          const at::Tensor col = pats[l].select(2, b).narrow(1, b + 1, 30 - b - 1).mean(1);  // [head]
          want[static_cast<int64_t>(l)] += col / 2.0;
          rate[static_cast<int64_t>(l)] += (col > 0.3).to(at::kDouble).mean() / 2.0;
        }
      }
      EXPECT_LT((res.sinkScore - want).abs().max().item<double>(), 1e-5 * want.abs().max().item<double>()) << fam << " b=" << b;
      EXPECT_TRUE(at::allclose(res.sinkRate, rate)) << fam;
      // The materialised option gives the same numbers.
      o.materialize = true;
      const auto mat = analysis::runSinks(*m, rows, o);
      EXPECT_LT((mat.sinkScore - want).abs().max().item<double>(), 1e-5 * want.abs().max().item<double>()) << fam;
    }
  }
}

TEST(Sinks, SecondarySinkCandidatesMatchHiddenStateCosines) {
  MECHSCOPE_ATTN_FIXTURE_OR_SKIP(dir, "gpt2");
  auto m = HookedTransformer::load(dir);
  const auto ids = randomIds(24, m->config().dVocab, 4);
  analysis::SinksOptions o;
  o.cosineThreshold = 0.5;  // random weights: low threshold so candidates exist
  const auto res = analysis::runSinks(*m, {ids}, o);
  const auto cache = m->runWithCache(at::tensor(at::ArrayRef<int64_t>(ids), at::kLong).unsqueeze(0), {"blocks.*.hook_resid_post", "blocks.*.hook_mlp_out"});
  const auto [start, end] = res.window[0];
  std::map<int64_t, std::vector<int>> want;
  for (int l = start; l < end; ++l) {
    const at::Tensor h = cache.at("resid_post", l)[0].to(at::kDouble);
    for (int64_t p = 1; p < 24; ++p)
      if (std::abs(at::cosine_similarity(h[p], h[0], 0).item<double>()) > 0.5) want[p].push_back(l);
  }
  ASSERT_EQ(res.sinks.size(), want.size());
  for (const auto& s : res.sinks) {
    EXPECT_EQ(s.layers, want[s.position]);
    const at::Tensor mo = cache.at("mlp_out", s.creationLayer)[0].to(at::kDouble);
    EXPECT_NEAR(s.mlpCosine, at::cosine_similarity(mo[s.position], mo[0], 0).item<double>(), 1e-5);
    EXPECT_NEAR(s.mlpNorm, mo[s.position].norm().item<double>(), 1e-4 * s.mlpNorm);
  }
}

TEST(Sinks, PlantedRecoversSinkHeadsWindowAndSecondarySink) {
  const auto& f = attnPlanted();
  const auto& exp = f.planted["expected"];
  auto words = planted::idleText();
  words.insert(words.begin() + 5, ";");
  const auto res = analysis::runSinks(*f.model, {planted::toIds(words)});
  // Primary window and the one secondary sink.
  EXPECT_EQ(res.window[0].first, exp["primary_sink"]["window"][0].get<int>());
  EXPECT_EQ(res.window[0].second, exp["primary_sink"]["window"][1].get<int>());
  ASSERT_EQ(res.sinks.size(), 1u);
  const auto& s = res.sinks[0];
  EXPECT_EQ(s.position, 6);
  EXPECT_EQ(s.tokenId, planted::tokenId(exp["secondary_sink"]["token"].get<std::string>()));
  EXPECT_EQ(s.creationLayer, exp["secondary_sink"]["creation_layer"].get<int>());
  EXPECT_EQ(s.lifetime, exp["secondary_sink"]["lifetime"].get<int>());
  EXPECT_EQ(s.label, exp["secondary_sink"]["label"].get<std::string>());
  EXPECT_NEAR(s.mlpCosine, exp["secondary_sink"]["mlp_cosine"].get<double>(), 1e-4);
  EXPECT_NEAR(s.mlpNorm, exp["secondary_sink"]["mlp_norm"].get<double>(), 1e-2);
  const auto json = analysis::sinksToResult(res, {}).json;
  EXPECT_EQ(json["secondary_sinks"][0]["creation_layer"].get<int>(), 8);
  EXPECT_EQ(json["sink_levels"][0]["lifetime"].get<int>(), 6);

  // Sink heads (sink score > 0.3 on BOS) on idle text are exactly planted.json's.
  const auto idle = analysis::runSinks(*f.model, {planted::toIds(planted::idleText())});
  std::set<std::pair<int, int>> got, want;
  for (int l = 0; l < idle.sinkScore.size(0); ++l)
    for (int h = 0; h < idle.sinkScore.size(1); ++h)
      if (idle.sinkScore[l][h].item<double>() > 0.3) got.insert({l, h});
  for (const auto& e : exp["sink_heads"]) want.insert({e[0].get<int>(), e[1].get<int>()});
  EXPECT_EQ(got, want);
}

TEST(Sinks, BadBosPositionIsAnInputError) {
  const auto& f = attnPlanted();
  analysis::SinksOptions o;
  o.bosPosition = 50;
  EXPECT_THROW(analysis::runSinks(*f.model, {planted::toIds(planted::idleText())}, o), InputError);
}

}  // namespace
}  // namespace mechscope::test
