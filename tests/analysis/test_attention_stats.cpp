// The chunked attention path equals the explicit one, stays memory-bounded, and the streaming
// driver's statistics equal statsFromPattern on materialised patterns; helper functions.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/version.h>

#include <cmath>
#include <limits>

#include "analysis/common/attention_stats.hpp"
#include "analysis/common/needle.hpp"
#include "analysis/common/result_io.hpp"
#include "analysis/common/rouge.hpp"
#include "core/common/errors.hpp"
#include "core/common/remove_tree.hpp"
#include "core/probe/cpu_memory_meter.hpp"
#include "tests/analysis/test_attention_stats_support.hpp"
#include "tests/common/scratch_root.hpp"

namespace mechscope::test {
namespace {

double relErr(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.to(at::kDouble), y = b.to(at::kDouble);
  return ((x - y).abs().max() / y.abs().max().clamp_min(1e-30)).item<double>();
}

class ChunkedPath : public ::testing::TestWithParam<std::string> {};

TEST_P(ChunkedPath, EqualsExplicitOnFixture) {
  MECHSCOPE_ATTN_FIXTURE_OR_SKIP(dir, GetParam());
  auto m = HookedTransformer::load(dir);
  const auto ids = randomIds(24, m->config().dVocab, 3);
  const at::Tensor tokens = at::tensor(at::ArrayRef<int64_t>(ids), at::kLong).unsqueeze(0);
  ForwardOptions ex, ch;
  ex.path = AttentionPath::Explicit;
  ch.path = AttentionPath::Chunked;
  const auto a = m->forward(tokens, ex), b = m->forward(tokens, ch);
  EXPECT_EQ(a.attentionPath, "explicit");
  EXPECT_EQ(b.attentionPath, "chunked");
  EXPECT_LT(relErr(b.logits, a.logits), 1e-5);
  // With left padding (batch of two) the chunked path still equals the explicit one.
  at::Tensor two = at::cat({tokens, tokens.roll(3, 1)}, 0);  // [2, pos]
  at::Tensor mask = at::ones_like(two);
  mask[1].narrow(0, 0, 5).zero_();
  ex.attentionMask = mask;
  ch.attentionMask = mask;
  EXPECT_LT(relErr(m->forward(two, ch).logits, m->forward(two, ex).logits), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ChunkedPath, ::testing::Values("gpt2", "llama", "qwen3", "mistral", "pythia"));

TEST(ChunkedPathTiles, ManyTilesEqualExplicitAndAutoPicksChunked) {
  // 2048 keys × 8 heads: 256-row tiles at the 16 MB CPU budget, so the pass runs in eight tiles and
  // Auto (LibTorch 1.13) picks the chunked path: the explicit scores would be 134 MB.
  auto m = randomGpt2(2, 8, 64, 2048, 50);
  const auto ids = randomIds(2048, 50, 9);
  const at::Tensor tokens = at::tensor(at::ArrayRef<int64_t>(ids), at::kLong).unsqueeze(0);
  ForwardOptions ex, au;
  ex.path = AttentionPath::Explicit;
  const auto a = m->forward(tokens, ex), b = m->forward(tokens, au);
#if TORCH_VERSION_MAJOR >= 2
  EXPECT_EQ(b.attentionPath, "fused");
#else
  EXPECT_EQ(b.attentionPath, "chunked");
#endif
  EXPECT_LT(relErr(b.logits, a.logits), 1e-5);
}

TEST(ChunkedPathMemory, A4096TokenForwardAllocatesFarLessThanOnePattern) {
  auto m = randomGpt2(1, 4, 32, 4096, 50);
  const auto ids = randomIds(4096, 50, 5);
  const at::Tensor tokens = at::tensor(at::ArrayRef<int64_t>(ids), at::kLong).unsqueeze(0);
  ForwardOptions ch;
  ch.path = AttentionPath::Chunked;
  ch.logitsLastOnly = true;
  int64_t peak = 0;
  {
    CpuMemoryMeter meter;
    const auto r = m->forward(tokens, ch);
    peak = meter.peakBytes();
    EXPECT_EQ(r.attentionPath, "chunked");
  }
  const int64_t pattern = int64_t{4} * 4096 * 4096 * 4;  // heads · n² · 4 bytes = 268 MB
  std::printf("[chunked] 4096 tokens, 4 heads: peak %.1f MB vs one pattern %.1f MB\n", peak / 1e6, pattern / 1e6);
  EXPECT_LT(peak, pattern / 4);
}

TEST(AttentionStats, ProbeDriverEqualsStatsFromPatternOnFixtures) {
  for (const std::string fam : {"gpt2", "llama", "qwen3"}) {
    const auto dir = fixtureModel(fam);
    if (dir.empty()) GTEST_SKIP() << "fixtures absent";
    auto m = HookedTransformer::load(dir);
    const auto ids = randomIds(40, m->config().dVocab, 11);
    const auto patterns = materialisedPatterns(*m, ids);
    ProbeRequest req;
    req.columnSums = req.columnCounts = req.distance = req.entropy = true;
    req.window = 10;
    req.topK = 1;
    req.keySet = {0, 3, 4, 17};
    int seen = 0;
    analysis::runAttentionStats(*m, ids, req, [&](int l, const ProbeResult& s) {
      const ProbeResult ref = statsFromPattern(patterns[static_cast<size_t>(l)], req);
      EXPECT_LT(relErr(s.columnSums, ref.columnSums), 1e-5) << fam << " layer " << l;
      EXPECT_LT(relErr(s.distance, ref.distance), 1e-5) << fam << " layer " << l;
      EXPECT_LT(relErr(s.windowed, ref.windowed), 1e-5) << fam << " layer " << l;
      EXPECT_LT(relErr(s.keySetMass, ref.keySetMass), 1e-5) << fam << " layer " << l;
      EXPECT_LT(relErr(s.entropy, ref.entropy), 1e-5) << fam << " layer " << l;
      EXPECT_TRUE(at::equal(s.topIndices, ref.topIndices)) << fam << " layer " << l;
      ++seen;
    });
    EXPECT_EQ(seen, m->config().nLayers) << fam;
  }
}

// A second pass over the same ids that starts every layer from the residuals the first kept computes only q and k
// (no logits, attention path "none") and gives the first pass's statistics bit for bit; residuals of the wrong layer
// change them, so the kept ones are what is read.
TEST(AttentionStats, KeptResidualsGiveTheSameStatisticsFromQueriesAndKeysAlone) {
  for (const std::string fam : {"gpt2", "llama", "qwen3"}) {
    const auto dir = fixtureModel(fam);
    if (dir.empty()) GTEST_SKIP() << "fixtures absent";
    auto m = HookedTransformer::load(dir);
    const auto ids = randomIds(33, m->config().dVocab, 5);
    ProbeRequest req;
    req.columnSums = req.distance = true;
    req.topK = 1;
    std::vector<ProbeResult> firstStats, againStats;
    std::vector<at::Tensor> kept;
    analysis::AttentionStatsOptions first;
    first.keepResidPre = &kept;
    const ForwardResult fr = analysis::runAttentionStats(*m, ids, req, [&](int, const ProbeResult& s) { firstStats.push_back(s); }, first);
    ASSERT_EQ(kept.size(), static_cast<size_t>(m->config().nLayers)) << fam;
    EXPECT_TRUE(fr.logits.defined());
    analysis::AttentionStatsOptions again;
    again.residPre = &kept;
    const ForwardResult qk = analysis::runAttentionStats(*m, ids, req, [&](int, const ProbeResult& s) { againStats.push_back(s); }, again);
    EXPECT_EQ(qk.attentionPath, "none") << fam << ": the second pass must skip attention";
    EXPECT_FALSE(qk.logits.defined());
    ASSERT_EQ(againStats.size(), firstStats.size()) << fam;
    for (size_t l = 0; l < firstStats.size(); ++l) {
      EXPECT_TRUE(againStats[l].columnSums.equal(firstStats[l].columnSums)) << fam << " layer " << l;
      EXPECT_TRUE(againStats[l].distance.equal(firstStats[l].distance)) << fam << " layer " << l;
      EXPECT_TRUE(againStats[l].topIndices.equal(firstStats[l].topIndices)) << fam << " layer " << l;
    }
    std::vector<at::Tensor> shifted(kept.rbegin(), kept.rend());  // layer l reads layer L − 1 − l's residual
    std::vector<ProbeResult> wrongStats;
    again.residPre = &shifted;
    analysis::runAttentionStats(*m, ids, req, [&](int, const ProbeResult& s) { wrongStats.push_back(s); }, again);
    EXPECT_GT(relErr(wrongStats.front().distance, firstStats.front().distance), 1e-3) << fam << ": kept residuals not read";
    std::vector<at::Tensor> tooFew(kept.begin(), kept.end() - 1);
    again.residPre = &tooFew;
    EXPECT_THROW(analysis::runAttentionStats(*m, ids, req, [](int, const ProbeResult&) {}, again), InputError) << fam;
  }
}

TEST(AttentionStats, UniformHeadHooksGiveUniformRows) {
  MECHSCOPE_ATTN_FIXTURE_OR_SKIP(dir, "llama");
  auto m = HookedTransformer::load(dir);
  const auto ids = randomIds(20, m->config().dVocab, 2);
  HookSet masks;
  analysis::addUniformHeadHooks(masks, *m, {{1, 2}});
  ForwardOptions fo;
  fo.path = AttentionPath::Explicit;
  const auto cache = m->runWithCache(at::tensor(at::ArrayRef<int64_t>(ids), at::kLong).unsqueeze(0), {"blocks.1.attn.hook_pattern"}, fo, {},
                                     nullptr, &masks);
  const at::Tensor p = cache.at("pattern", 1)[0][2];  // [query, key]
  const at::Tensor want = at::ones({20, 20}).tril() / at::arange(1, 21, at::kFloat).unsqueeze(1);
  EXPECT_LT((p - want).abs().max().item<double>(), 1e-6);
  EXPECT_THROW(analysis::addUniformHeadHooks(masks, *m, {{9, 0}}), InputError);
}

TEST(AttentionStatsHelpers, QuantilesPeaksRougeNeedles) {
  EXPECT_EQ(analysis::topQuantilePositions({0.1, 0.9, 0.5, 0.7, 0.2}, 0.4), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(analysis::topQuantilePositions({5, 0.9, 0.5, 0.7, 0.2}, 0.4, 1), (std::vector<int64_t>{1, 3}));
  // 60th percentile of {0,1,3,1,0,2,0} (sorted 0,0,0,1,1,2,3) = 1 (index 3.6 → 1 + 0.6·0) → peaks 2 and 5.
  EXPECT_EQ(analysis::peakPositions({0, 1, 3, 1, 0, 2, 0}, 60), (std::vector<int64_t>{2, 5}));
  EXPECT_DOUBLE_EQ(analysis::rouge1Recall("take a walk in Chaoyang Park", "I would take a walk in the park"), 5.0 / 6.0);
  EXPECT_DOUBLE_EQ(analysis::rouge1Recall("records were broken", "record was breaking"), 1.0 / 3.0);
  EXPECT_EQ(analysis::lightStem("walking"), "walk");
  EXPECT_EQ(analysis::roundedLinspace(0, 100, 10), (std::vector<int64_t>{0, 11, 22, 33, 44, 56, 67, 78, 89, 100}));
  EXPECT_EQ(analysis::roundedLinspace(0, 50000, 20)[1], 2632);
  const auto span = analysis::findNeedleSpan({5, 6, 1, 2, 3, 4, 9}, {1, 2, 3, 4});
  ASSERT_TRUE(span);
  EXPECT_EQ(*span, std::make_pair(int64_t{2}, int64_t{6}));
  EXPECT_FALSE(analysis::findNeedleSpan({5, 6, 1, 2, 3, 9}, {1, 2, 3, 4}));
}

TEST(ResultIo, JsonNestedListsAndH5OrUnsupported) {
  analysis::AnalysisResult r;
  r.name = "unit";
  r.json["a"] = analysis::tensorToJson(at::arange(6, at::kDouble).view({2, 3}));
  EXPECT_EQ(r.json["a"][1][2].get<double>(), 5.0);
  // Every element in place, whatever the layout and dtype: a transposed [3, 2, 4] int32 view, NaN and ±inf as null,
  // bools, a scalar, empty dimensions.
  const at::Tensor ints = at::arange(24, at::kInt).view({4, 2, 3}).permute({2, 1, 0});  // [3, 2, 4], t[i][j][k] = 6k + 3j + i
  const nlohmann::json ij = analysis::tensorToJson(ints);
  ASSERT_EQ(ij.size(), 3u);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 4; ++k) EXPECT_EQ(ij[i][j][k].get<int64_t>(), 6 * k + 3 * j + i) << i << j << k;
  const double inf = std::numeric_limits<double>::infinity();
  const nlohmann::json fj = analysis::tensorToJson(at::tensor({1.5, std::nan(""), -inf, 2.0}, at::kFloat));
  EXPECT_EQ(fj.dump(), "[1.5,null,null,2.0]");
  EXPECT_EQ(analysis::tensorToJson(at::tensor({1, 0}, at::kLong).to(at::kBool)).dump(), "[true,false]");
  EXPECT_EQ(analysis::tensorToJson(at::scalar_tensor(7, at::kLong)).dump(), "7");
  EXPECT_EQ(analysis::tensorToJson(at::zeros({2, 0})).dump(), "[[],[]]");
  r.addArray("a", at::arange(6, at::kFloat).view({2, 3}));
  const auto dir = test::freshScratchDir("attn-resultio");
  analysis::writeResultJson(r, dir / "r.json");
  EXPECT_TRUE(std::filesystem::exists(dir / "r.json"));
  if (analysis::resultH5Available()) {
    analysis::writeResultH5(r, dir / "r.h5", {});
    EXPECT_TRUE(std::filesystem::exists(dir / "r.h5"));
    EXPECT_FALSE(std::filesystem::exists(dir / "r.h5.partial"));
  } else {
    EXPECT_THROW(analysis::writeResultH5(r, dir / "r.h5", {}), UnsupportedError);
  }
  EXPECT_THROW(analysis::writeResultJson(r, dir / "no" / "such" / "r.json"), InputError);
  mechscope::removeTree(dir);
}

}  // namespace
}  // namespace mechscope::test
