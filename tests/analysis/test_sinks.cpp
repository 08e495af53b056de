// Sinks: sink scores and sink rate equal an independent computation from materialised patterns on
// the fixture models; the official protocol (primary among {0, 1, 2} by mean norm, HF hidden-state
// list, clipper window, |cos| candidates) recomputed with plain at:: ops from the fixtures' Hugging
// Face reference hidden states and attentions gives the same primary, window, sinks, layers and each
// sink's own sink score; on the planted model the analysis recovers planted.json's sink heads,
// primary sink window and the secondary sink (';', creation layer 8, lifetime 6, MLP cosine 1, norm 84.85).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <set>

#include "analysis/sinks/sinks.hpp"
#include "core/common/errors.hpp"
#include "core/safetensors/safetensors_file.hpp"
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
      EXPECT_EQ(res.primary[0].position, b);
      EXPECT_FALSE(res.primary[0].detected);
      // The materialised option gives the same numbers.
      o.materialize = true;
      const auto mat = analysis::runSinks(*m, rows, o);
      EXPECT_LT((mat.sinkScore - want).abs().max().item<double>(), 1e-5 * want.abs().max().item<double>()) << fam;
    }
  }
}

/// The official protocol on one row of HF outputs: hs [L, pos, d] = hidden_states[1:] (last after the
/// final norm), att [L, head, query, key].
struct Protocol {
  int64_t b = 0;
  int start = 0, end = 0;
  std::map<int64_t, std::vector<int>> sinks;  // position → recorded layers
  double minMargin = 1.0;                     // smallest | |cos| − threshold | seen (robustness guard)
};
Protocol officialProtocol(const at::Tensor& hs, double threshold) {
  Protocol p;
  const int64_t L = hs.size(0), n = hs.size(1);
  const at::Tensor meanNorm = hs.narrow(1, 0, 3).norm(2, {2}).mean(0);  // [3]
  p.b = meanNorm.argmax().item<int64_t>();
  const at::Tensor bn = hs.select(1, p.b).norm(2, {1});  // [L]
  const at::Tensor diff = bn.narrow(0, 1, L - 1) - bn.narrow(0, 0, L - 1);
  p.start = static_cast<int>(diff.argmax().item<int64_t>()) + 1;
  p.end = p.start < L - 1 ? static_cast<int>(diff.narrow(0, p.start, L - 1 - p.start).argmin().item<int64_t>()) + p.start + 1
                          : static_cast<int>(L);
  for (int l = p.start; l < p.end; ++l) {
    const at::Tensor cs = at::cosine_similarity(hs[l].narrow(0, p.b + 1, n - p.b - 1), hs[l][p.b].unsqueeze(0), 1).abs();
    for (int64_t i = 0; i < cs.size(0); ++i) {
      const double c = cs[i].item<double>();
      p.minMargin = std::min(p.minMargin, std::abs(c - threshold));
      if (c > threshold) p.sinks[p.b + 1 + i].push_back(l);
    }
  }
  return p;
}

TEST(Sinks, FollowsTheOfficialProtocolOnHfReferenceOutputs) {
  // Thresholds low enough that these random-weight fixtures have candidates, and ≥ 2e-3 away from
  // every reference cosine (asserted) so that 1e-4 parity errors cannot flip a decision.
  const std::vector<std::pair<std::string, double>> cases = {{"gpt2", 0.6}, {"llama", 0.33}, {"qwen3", 0.5}};
  for (const auto& [fam, threshold] : cases) {
    const auto dir = fixtureModel(fam);
    if (dir.empty()) GTEST_SKIP() << "fixtures absent";
    auto m = HookedTransformer::load(dir);
    const auto ref = SafetensorsFile::open(dir / "reference.safetensors");
    const at::Tensor ids = ref.tensor("input_ids");                                   // [2, 24]
    const at::Tensor hidden = ref.tensor("hidden_states").to(at::kDouble);            // [L + 1, 2, 24, d]
    const at::Tensor att = ref.tensor("attentions").to(at::kDouble);                  // [L, 2, head, 24, 24]
    const int64_t L = att.size(0), H = att.size(2), n = ids.size(1);
    size_t found = 0;
    std::set<int64_t> primaries;
    for (int64_t row = 0; row < 2; ++row) {
      const at::Tensor idr = ids[row].contiguous();
      const std::vector<int64_t> toks(idr.data_ptr<int64_t>(), idr.data_ptr<int64_t>() + n);
      const Protocol want = officialProtocol(hidden.narrow(0, 1, L).select(1, row), threshold);
      ASSERT_GT(want.minMargin, 2e-3) << fam << " row " << row << ": pick a threshold further from the data";
      analysis::SinksOptions o;
      o.cosineThreshold = threshold;
      const auto res = analysis::runSinks(*m, {toks}, o);
      ASSERT_EQ(res.primary.size(), 1u);
      EXPECT_TRUE(res.primary[0].detected);
      EXPECT_EQ(res.primary[0].position, want.b) << fam << " row " << row;
      primaries.insert(want.b);
      EXPECT_EQ(res.primary[0].windowStart, want.start) << fam;
      EXPECT_EQ(res.primary[0].windowEnd, want.end) << fam;
      // Primary sink score: mean over i > b of the HF attention column.
      const at::Tensor prim = att.select(1, row).select(3, want.b).narrow(2, want.b + 1, n - want.b - 1).mean(2);  // [L, head]
      EXPECT_LT((res.sinkScore - prim).abs().max().item<double>(), 2e-4) << fam;
      ASSERT_EQ(res.sinks.size(), want.sinks.size()) << fam << " row " << row;
      found += want.sinks.size();
      for (const auto& s : res.sinks) {
        ASSERT_TRUE(want.sinks.count(s.position)) << fam << " position " << s.position;
        EXPECT_EQ(s.layers, want.sinks.at(s.position)) << fam;
        EXPECT_EQ(s.tokenId, toks[static_cast<size_t>(s.position)]);
        // The sink's own score from the HF attentions; its score lifetime on the same ε = 0.3.
        ASSERT_EQ(s.score.size(0), L);
        ASSERT_EQ(s.score.size(1), H);
        std::vector<int> scoreLayers;
        for (int64_t l = 0; l < L; ++l) {
          const at::Tensor col = s.position + 1 < n ? att[l][row].select(2, s.position).narrow(1, s.position + 1, n - s.position - 1).mean(1)
                                                    : at::zeros({H}, at::kDouble);  // [head]
          EXPECT_LT((s.score[l] - col).abs().max().item<double>(), 2e-4) << fam << " layer " << l;
          const double top = col.max().item<double>();
          if (std::abs(top - 0.3) > 2e-4 && top > 0.3) scoreLayers.push_back(static_cast<int>(l));
          if (std::abs(top - 0.3) <= 2e-4) scoreLayers = s.scoreLayers;  // too close to ε to call: take ours
        }
        EXPECT_EQ(s.scoreLayers, scoreLayers) << fam;
        EXPECT_EQ(s.scoreLifetime, static_cast<int>(s.scoreLayers.size()));
      }
    }
    EXPECT_GT(found, 0u) << fam << ": the test must see secondary-sink candidates";
    if (fam == "llama") {
      EXPECT_EQ(primaries, (std::set<int64_t>{1, 2})) << "the detection must move off position 0";
    }
  }
}

TEST(Sinks, ResidPostHiddenStatesMatchTheCache) {
  MECHSCOPE_ATTN_FIXTURE_OR_SKIP(dir, "gpt2");
  auto m = HookedTransformer::load(dir);
  const at::Tensor idt = SafetensorsFile::open(dir / "reference.safetensors").tensor("input_ids")[0].contiguous();
  const std::vector<int64_t> ids(idt.data_ptr<int64_t>(), idt.data_ptr<int64_t>() + idt.numel());
  const int64_t n = static_cast<int64_t>(ids.size());
  analysis::SinksOptions o;
  o.hiddenStates = analysis::SinkHiddenStates::ResidPost;
  o.bosPosition = 0;
  o.cosineThreshold = 0.5;
  const auto res = analysis::runSinks(*m, {ids}, o);
  const auto cache = m->runWithCache(at::tensor(at::ArrayRef<int64_t>(ids), at::kLong).unsqueeze(0), {"blocks.*.hook_resid_post", "blocks.*.hook_mlp_out"});
  std::vector<double> bosNorm;
  for (int l = 0; l < m->config().nLayers; ++l) bosNorm.push_back(cache.at("resid_post", l)[0][0].norm().item<double>());
  const auto [start, end] = res.window[0];
  std::map<int64_t, std::vector<int>> want;
  for (int l = start; l < end; ++l) {
    const at::Tensor h = cache.at("resid_post", l)[0].to(at::kDouble);
    for (int64_t p = 1; p < n; ++p)
      if (std::abs(at::cosine_similarity(h[p], h[0], 0).item<double>()) > 0.5) want[p].push_back(l);
  }
  ASSERT_FALSE(want.empty()) << "the test must see candidates";
  ASSERT_EQ(res.sinks.size(), want.size());
  for (const auto& s : res.sinks) {
    EXPECT_EQ(s.layers, want[s.position]);
    const at::Tensor mo = cache.at("mlp_out", s.creationLayer)[0].to(at::kDouble);
    EXPECT_NEAR(s.mlpCosine, at::cosine_similarity(mo[s.position], mo[0], 0).item<double>(), 1e-5);
    EXPECT_NEAR(s.mlpNorm, mo[s.position].norm().item<double>(), 1e-4 * s.mlpNorm);
  }
  // The window is the clipper's on the pre-norm norms; the default (hf) list differs in its last entry.
  std::vector<double> d;
  for (size_t l = 0; l + 1 < bosNorm.size(); ++l) d.push_back(bosNorm[l + 1] - bosNorm[l]);
  EXPECT_EQ(start, static_cast<int>(std::max_element(d.begin(), d.end()) - d.begin()) + 1);
  const auto json = analysis::sinksToResult(res, o).json;
  EXPECT_EQ(json["hidden_states"], "resid_post");
  EXPECT_EQ(json["bos_position"], 0);
  EXPECT_EQ(json["primary_sink"][0]["detected"], false);
}

TEST(Sinks, PlantedRecoversSinkHeadsWindowAndSecondarySink) {
  const auto& f = attnPlanted();
  const auto& exp = f.planted["expected"];
  auto words = planted::idleText();
  words.insert(words.begin() + 5, ";");
  const auto ids = planted::toIds(words);
  const auto res = analysis::runSinks(*f.model, {ids});
  // Primary detected at BOS (its massive activation), window and the one secondary sink.
  EXPECT_TRUE(res.primary[0].detected);
  EXPECT_EQ(res.primary[0].position, exp["primary_sink"]["position"].get<int64_t>());
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
  // Its own sink score equals the materialised column mean; the planted sink-reader heads (sink heads
  // above the creation layer inside the window) give it a score lifetime.
  const auto pats = materialisedPatterns(*f.model, ids);
  const int64_t n = static_cast<int64_t>(ids.size());
  std::vector<int> scoreLayers;
  for (size_t l = 0; l < pats.size(); ++l) {
    const at::Tensor col = pats[l].select(2, 6).narrow(1, 7, n - 7).mean(1);  // [head]
    EXPECT_LT((s.score[static_cast<int64_t>(l)] - col).abs().max().item<double>(), 1e-5) << l;
    if (col.max().item<double>() > 0.3) scoreLayers.push_back(static_cast<int>(l));
  }
  EXPECT_EQ(s.scoreLayers, scoreLayers);
  std::set<int> readers;
  for (const auto& h : f.planted["heads"])
    for (const auto& role : h["roles"])
      if (role == "secondary_sink_reader") readers.insert(h["layer"].get<int>());
  ASSERT_FALSE(readers.empty());
  for (int l : readers) EXPECT_GT(s.score[l].max().item<double>(), 0.0) << "reader layer " << l;
  const auto json = analysis::sinksToResult(res, {}).json;
  EXPECT_EQ(json["secondary_sinks"][0]["creation_layer"].get<int>(), 8);
  EXPECT_EQ(json["secondary_sinks"][0]["score_lifetime"].get<int>(), s.scoreLifetime);
  EXPECT_EQ(json["sink_levels"][0]["lifetime"].get<int>(), 6);
  EXPECT_EQ(json["primary_sink"][0]["position"].get<int>(), 0);
  EXPECT_TRUE(json["bos_position"].is_null());
  EXPECT_EQ(json["hidden_states"], "hf");

  // Sink heads (sink score > 0.3 on BOS) on idle text are exactly planted.json's.
  const auto idle = analysis::runSinks(*f.model, {planted::toIds(planted::idleText())});
  std::set<std::pair<int, int>> got, want;
  for (int l = 0; l < idle.sinkScore.size(0); ++l)
    for (int h = 0; h < idle.sinkScore.size(1); ++h)
      if (idle.sinkScore[l][h].item<double>() > 0.3) got.insert({l, h});
  for (const auto& e : exp["sink_heads"]) want.insert({e[0].get<int>(), e[1].get<int>()});
  EXPECT_EQ(got, want);
}

// The candidates' pass reuses the first pass's row normalisers and residual stream (same ids, same q/k, computed
// from the kept residuals without attention or MLP): every number equals the runs that recompute one or both, on the planted secondary sink and with every position a candidate (cosine threshold
// 0) on fixtures. gpt-oss's first pass asks every key for its learned-sink mass, which runs Scan on the CPU and
// keeps no normalisers: its second pass recomputes, the fallback (folding is checked in the probe's test).
TEST(Sinks, CandidatePassWithKeptNormalisersAndResidualsEqualsRecomputing) {
  auto words = planted::idleText();
  words.insert(words.begin() + 5, ";");
  struct Case {
    const HookedTransformer* model;
    std::vector<int64_t> ids;
    double cosine;
    std::string name;
  };
  std::vector<Case> cases{{attnPlanted().model.get(), planted::toIds(words), 0.9, "planted"}};
  std::vector<std::unique_ptr<HookedTransformer>> keep;
  for (const std::string fam : {"llama", "gpt_oss"}) {
    const auto dir = fixtureModel(fam);
    if (dir.empty()) continue;
    keep.push_back(HookedTransformer::load(dir));
    cases.push_back({keep.back().get(), randomIds(24, keep.back()->config().dVocab, 3), 0.0, fam});
  }
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    analysis::SinksOptions o;
    o.cosineThreshold = c.cosine;
    const auto kept = analysis::runSinks(*c.model, {c.ids}, o);
    o.reuseResiduals = false;  // the whole forward again, normalisers kept
    const auto rerun = analysis::runSinks(*c.model, {c.ids}, o);
    o.reuseNormalisers = false;
    const auto recomputed = analysis::runSinks(*c.model, {c.ids}, o);
    ASSERT_FALSE(kept.sinks.empty()) << "no candidate: the second pass did not run";
    for (const auto* other : {&rerun, &recomputed}) {
      ASSERT_EQ(kept.sinks.size(), other->sinks.size());
      for (size_t i = 0; i < kept.sinks.size(); ++i) {
        EXPECT_EQ(kept.sinks[i].position, other->sinks[i].position);
        EXPECT_TRUE(kept.sinks[i].score.equal(other->sinks[i].score)) << "candidate at " << kept.sinks[i].position;
        EXPECT_EQ(kept.sinks[i].scoreLayers, other->sinks[i].scoreLayers);
      }
      EXPECT_TRUE(kept.sinkScore.equal(other->sinkScore));
    }
  }
}

TEST(Sinks, BadOptionsAreInputErrors) {
  const auto& f = attnPlanted();
  const auto ids = planted::toIds(planted::idleText());
  analysis::SinksOptions o;
  o.bosPosition = 50;
  EXPECT_THROW(analysis::runSinks(*f.model, {ids}, o), InputError);
  o = {};
  o.bosCandidates = {0, -1};
  EXPECT_THROW(analysis::runSinks(*f.model, {ids}, o), InputError);
  o = {};
  EXPECT_THROW(analysis::runSinks(*f.model, {{ids[0]}}, o), InputError);  // one token: no later query
  EXPECT_THROW(analysis::parseSinkHiddenStates("final"), InputError);
  EXPECT_EQ(analysis::parseSinkHiddenStates("resid_post"), analysis::SinkHiddenStates::ResidPost);
}

}  // namespace
}  // namespace mechscope::test
