// The per-family planted models (`mechscope-cli plant --family F`, docs/planted-models.md "Every family"):
// for every family, the folder loads through the family's own loader and each planted head attends where
// its arithmetic says, at least by the bound the builder derived (planted.json "bounds", never from a run)
// and by the documented floors; the greedy model copies on a repeated sequence and completes the needle;
// the sinks and retrieval analyses put the planted heads first.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <random>

#include "../analysis/retrieval_test_support.hpp"
#include "analysis/retrieval/retrieval.hpp"
#include "analysis/sinks/sinks.hpp"
#include "core/common/errors.hpp"
#include "core/common/remove_tree.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/synth/planted_family_config.hpp"
#include "core/synth/planted_model.hpp"
#include "core/synth/planted_tasks.hpp"
#include "core/synth/planted_vocab.hpp"
#include "tests/common/scratch_root.hpp"

namespace mechscope::test {
namespace {

namespace fs = std::filesystem;
using HeadList = std::vector<std::pair<int, int>>;

// The documented floors (docs/planted-models.md); the builder refuses to write a model whose arithmetic
// bounds fall below them.
constexpr double kPrevFloor = 0.95, kSinkFloor = 0.95, kInductionFloor = 0.9;
constexpr double kTolerance = 1e-3;  // fp32 arithmetic against the bound's exact arithmetic

/// One planted family model, written once per test binary into a temporary folder (removed at exit).
struct FamilyModel {
  fs::path folder;
  std::unique_ptr<HookedTransformer> model;
  nlohmann::json planted;
  ~FamilyModel() {
    std::error_code ec;
    removeTree(folder, ec);
  }
};

const FamilyModel& familyModel(const std::string& family) {
  static std::map<std::string, std::unique_ptr<FamilyModel>> models;
  auto& slot = models[family];
  if (!slot) {
    slot = std::make_unique<FamilyModel>();
    slot->folder = test::scratchRoot() / ("planted-" + family);
    planted::writePlantedFolder(slot->folder, "default", family);
    slot->model = HookedTransformer::load(slot->folder);
    slot->planted = planted::readPlantedJson(slot->folder);
  }
  return *slot;
}

HeadList heads(const nlohmann::json& list) {
  HeadList out;
  for (const auto& e : list) out.emplace_back(e[0].get<int>(), e[1].get<int>());
  return out;
}

double bound(const FamilyModel& m, const char* key) { return m.planted["bounds"][key].get<double>(); }

/// Plain words (no names, colours, delimiter or needle words), as ids.
std::vector<int64_t> plainIds() {
  std::vector<int64_t> ids;
  for (auto kind : {planted::WordKind::Function, planted::WordKind::Filler, planted::WordKind::Object,
                    planted::WordKind::Place, planted::WordKind::Punctuation})
    for (int64_t id : planted::idsOfKind(kind)) ids.push_back(id);
  return ids;
}

/// BOS + n words drawn with replacement.
std::vector<int64_t> randomPrompt(int n, uint64_t seed) {
  const auto pool = plainIds();
  std::mt19937_64 rng(seed);
  std::vector<int64_t> ids{0};
  for (int i = 0; i < n; ++i) ids.push_back(pool[rng() % pool.size()]);
  return ids;
}

/// BOS + a sequence of n distinct words + the same sequence again.
std::vector<int64_t> repeatedPrompt(int n, uint64_t seed) {
  auto pool = plainIds();
  std::mt19937_64 rng(seed);
  std::shuffle(pool.begin(), pool.end(), rng);
  std::vector<int64_t> ids{0};
  for (int r = 0; r < 2; ++r) ids.insert(ids.end(), pool.begin(), pool.begin() + n);
  return ids;
}

/// Attention patterns [head, query, key] per layer and the logits [pos, vocab] of one prompt.
struct Run {
  std::vector<at::Tensor> patterns;
  at::Tensor logits;
};
Run run(const HookedTransformer& m, const std::vector<int64_t>& ids) {
  ForwardResult result;
  const auto cache = m.runWithCache(at::tensor(ids, at::kLong).unsqueeze(0), {"blocks.*.attn.hook_pattern"}, {},
                                    std::nullopt, &result);
  Run r;
  for (int l = 0; l < m.config().nLayers; ++l) r.patterns.push_back(cache.at("pattern", l)[0].to(at::kDouble));
  r.logits = result.logits[0];
  return r;
}

class PlantedFamilies : public ::testing::TestWithParam<std::string> {};

TEST_P(PlantedFamilies, LoadsAsItsFamilyWithItsBounds) {
  const auto& m = familyModel(GetParam());
  EXPECT_EQ(m.model->config().modelType, GetParam());
  EXPECT_EQ(m.planted["family"], GetParam());
  EXPECT_TRUE(fs::exists(m.folder / "tokenizer.json"));
  EXPECT_EQ(heads(m.planted["expected"]["previous_token_heads"]), (HeadList{{0, 0}}));
  EXPECT_EQ(heads(m.planted["expected"]["induction_heads"]), (HeadList{{1, 0}}));
  EXPECT_EQ(heads(m.planted["expected"]["retrieval_heads"]), (HeadList{{1, 0}}));
  EXPECT_EQ(heads(m.planted["expected"]["sink_heads"]), (HeadList{{0, 1}, {1, 1}}));
  EXPECT_GE(bound(m, "previous_token_attention"), kPrevFloor);
  EXPECT_GE(bound(m, "sink_bos_attention"), kSinkFloor);
  EXPECT_GE(bound(m, "induction_attention"), kInductionFloor);
  EXPECT_GE(bound(m, "induction_idle_bos_attention"), kInductionFloor);
}

TEST_P(PlantedFamilies, PreviousTokenAndSinkHeadsOnRandomText) {
  const auto& m = familyModel(GetParam());
  const int n = m.planted["bounds"]["max_positions"].get<int>() - 1;
  const auto ids = randomPrompt(n, 17);
  const auto r = run(*m.model, ids);
  const auto [pl, ph] = heads(m.planted["expected"]["previous_token_heads"])[0];
  const auto prev = r.patterns[static_cast<size_t>(pl)][ph];  // [query, key]
  const auto rows = at::arange(1, static_cast<int64_t>(ids.size()), at::kLong);
  const double prevMin = prev.index({rows, rows - 1}).min().item<double>();
  EXPECT_GE(prevMin, bound(m, "previous_token_attention") - kTolerance) << "A[i, i−1], worst row";
  for (const auto& [l, h] : heads(m.planted["expected"]["sink_heads"])) {
    const double bosMin = r.patterns[static_cast<size_t>(l)][h].index({rows, 0}).min().item<double>();
    EXPECT_GE(bosMin, bound(m, "sink_bos_attention") - kTolerance) << "sink head " << l << "." << h;
  }
}

TEST_P(PlantedFamilies, InductionHeadCopiesTheRepeatedHalf) {
  const auto& m = familyModel(GetParam());
  constexpr int kHalf = 30;
  const auto ids = repeatedPrompt(kHalf, 5);
  const auto r = run(*m.model, ids);
  const auto [il, ih] = heads(m.planted["expected"]["induction_heads"])[0];
  const auto ind = r.patterns[static_cast<size_t>(il)][ih];  // [query, key]
  const auto predicted = r.logits.argmax(-1);                // [pos]
  for (int64_t i = 1; i <= kHalf; ++i)  // first half: nothing to copy, the head rests on BOS
    EXPECT_GE(ind[i][0].item<double>(), bound(m, "induction_idle_bos_attention") - kTolerance) << "row " << i;
  for (int64_t i = kHalf + 1; i < static_cast<int64_t>(ids.size()); ++i) {
    // Row i holds the token at i − kHalf: the key after that earlier copy is i − kHalf + 1.
    EXPECT_GE(ind[i][i - kHalf + 1].item<double>(), bound(m, "induction_attention") - kTolerance) << "row " << i;
    if (i + 1 < static_cast<int64_t>(ids.size())) {
      EXPECT_EQ(predicted[i].item<int64_t>(), ids[static_cast<size_t>(i + 1)]) << "greedy prediction at " << i;
    }
  }
}

TEST_P(PlantedFamilies, SinksAnalysisRanksThePlantedSinkHeadsFirst) {
  const auto& m = familyModel(GetParam());
  analysis::SinksOptions opts;
  const bool massiveBos = m.model->config().preNorms;  // OLMo-2 reads the raw residual: BOS keeps RMS 1
  if (!massiveBos) opts.bosPosition = 0;
  const auto res = analysis::runSinks(*m.model, {repeatedPrompt(30, 9)}, opts);
  ASSERT_EQ(res.primary.size(), 1u);
  EXPECT_EQ(res.primary[0].position, 0);
  const auto sinks = heads(m.planted["expected"]["sink_heads"]);
  const auto ranked = analysis::rankHeads(res.sinkScore, static_cast<int>(sinks.size()));
  HeadList top;
  for (const auto& h : ranked) top.emplace_back(h.layer, h.head);
  std::sort(top.begin(), top.end());
  EXPECT_EQ(top, sinks);
  for (const auto& [l, h] : sinks) {
    EXPECT_GE(res.sinkScore[l][h].item<double>(), bound(m, "sink_bos_attention") - kTolerance);
  }
  if (res.learnedSinkMass.defined()) {
    EXPECT_LT(res.learnedSinkMass.max().item<double>(), 1e-6);  // gpt-oss: sinks at −60
  }
}

TEST_P(PlantedFamilies, RetrievalAnalysisFindsTheInductionHeadAndTheNeedle) {
  const auto& m = familyModel(GetParam());
  const auto needle = planted::needlePrompt(100, 0.4, 3);
  analysis::RetrievalTest t = test::plantedRetrievalTest(needle);
  t.length = static_cast<int64_t>(t.ids.size());
  analysis::RetrievalDecode d;
  d.maxNewTokens = static_cast<int>(needle.answer.size());
  const auto res = analysis::runRetrievalTest(*m.model, t, d);
  std::vector<int64_t> want;
  for (const auto& w : needle.answer) want.push_back(planted::tokenId(w));
  EXPECT_EQ(res.generated, want);
  const auto top = analysis::rankHeads(res.score, 1);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ((std::pair<int, int>{top[0].layer, top[0].head}), heads(m.planted["expected"]["retrieval_heads"])[0]);
  // Every generated word was copied from the needle: one 1/|span| per step.
  EXPECT_NEAR(res.score[top[0].layer][top[0].head].item<double>(),
              static_cast<double>(want.size()) / static_cast<double>(t.needleEnd - t.needleStart), 1e-9);
}

std::vector<std::string> nonGpt2Families() {
  auto all = planted::plantedFamilies();
  all.erase(std::remove(all.begin(), all.end(), "gpt2"), all.end());
  return all;
}

INSTANTIATE_TEST_SUITE_P(Every, PlantedFamilies, ::testing::ValuesIn(nonGpt2Families()),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

TEST(PlantedFamilyGpt2, DefaultFamilyIsTheGpt2Recipe) {
  const fs::path base = test::freshScratchDir("planted-gpt2-recipe");
  planted::writePlantedFolder(base / "a");
  planted::writePlantedFolder(base / "b", "default", "gpt2");
  for (const char* f : {"model.safetensors", "config.json", "planted.json", "tokenizer.json"}) {
    std::ifstream a(base / "a" / f, std::ios::binary), b(base / "b" / f, std::ios::binary);
    const std::string sa((std::istreambuf_iterator<char>(a)), {}), sb((std::istreambuf_iterator<char>(b)), {});
    EXPECT_FALSE(sa.empty()) << f;
    EXPECT_EQ(sa, sb) << f;
  }
  removeTree(base);
  EXPECT_THROW(planted::writePlantedFolder(base / "c", "nonexistent", "llama"), InputError);
}

}  // namespace
}  // namespace mechscope::test
