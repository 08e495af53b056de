// Retrieval grid bookkeeping: the resume key changes with every setting that changes a test's
// result, a sidecar written with other settings is refused (naming them) and none is created before
// a test finishes; the random-heads control masks K heads, none of them retrieval heads.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <fstream>
#include <functional>
#include <random>
#include <set>

#include "analysis/retrieval/head_control.hpp"
#include "analysis/retrieval/resume.hpp"
#include "analysis/retrieval/retrieval.hpp"
#include "core/common/errors.hpp"
#include "core/common/remove_tree.hpp"
#include "core/synth/planted_tasks.hpp"
#include "tests/analysis/retrieval_test_support.hpp"
#include "tests/analysis/test_attention_stats_support.hpp"
#include "tests/common/scratch_root.hpp"

namespace mechscope::test {
namespace {

analysis::RetrievalSettings baseSettings() {
  analysis::RetrievalSettings s;
  s.weightsHash = "w";
  s.tokenizerHash = "t";
  s.dtype = "fp32";
  s.device = "cpu";
  s.haystackHash = "h";
  s.needles = {{"n", "q", "a"}};
  return s;
}

TEST(RetrievalResume, KeyChangesWithEverySetting) {
  const auto base = analysis::retrievalResumeKey(baseSettings());
  EXPECT_EQ(base, analysis::retrievalResumeKey(baseSettings()));
  using S = analysis::RetrievalSettings;
  const std::vector<std::pair<const char*, std::function<void(S&)>>> edits = {
      {"model hash", [](S& s) { s.weightsHash = "w2"; }},
      {"tokenizer", [](S& s) { s.tokenizerHash = "t2"; }},
      {"dtype", [](S& s) { s.dtype = "bf16"; }},
      {"device", [](S& s) { s.device = "cuda"; }},
      {"haystack", [](S& s) { s.haystackHash = "h2"; }},
      {"needle text", [](S& s) { s.needles[0].needle = "n2"; }},
      {"question", [](S& s) { s.needles[0].question = "q2"; }},
      {"answer", [](S& s) { s.needles[0].realNeedle = "a2"; }},
      {"needle count", [](S& s) { s.needles.push_back({"n", "q", "a"}); }},
      {"buffer", [](S& s) { s.layout.buffer = 100; }},
      {"special tokens", [](S& s) { s.layout.addSpecialTokens = false; }},
      {"template", [](S& s) { s.layout.questionTemplate = "Q: {question}\nA:"; }},
      {"span threshold", [](S& s) { s.layout.spanThreshold = 0.8; }},
      {"generation length", [](S& s) { s.maxNewTokens = 20; }},
      {"newline stop", [](S& s) { s.stopOnNewline = false; }},
      {"stop tokens", [](S& s) { s.stopTokens = {13}; }},
      {"masking", [](S& s) { s.maskedHeads = {{1, 0}}; }},
      {"control", [](S& s) { s.controlHeads = {{3, 2}}; }},
      {"success threshold", [](S& s) { s.successThreshold = 0.6; }},
      {"materialize", [](S& s) { s.materialize = true; }},
  };
  std::set<std::string> keys = {base};
  for (const auto& [what, edit] : edits) {
    S s = baseSettings();
    edit(s);
    const auto k = analysis::retrievalResumeKey(s);
    EXPECT_NE(k, base) << what;
    keys.insert(k);
  }
  EXPECT_EQ(keys.size(), edits.size() + 1);  // all distinct
}

TEST(RetrievalResume, SidecarWithOtherSettingsIsRefusedAndNoneIsCreatedEarly) {
  const auto& f = attnPlanted();
  const int L = f.model->config().nLayers, H = f.model->config().nHeads;
  const auto dir = test::freshScratchDir("resume");
  const auto path = dir / "r.json.tests.jsonl";
  const auto settings = analysis::retrievalSettingsJson(baseSettings());
  {
    analysis::RetrievalResumeLog log(path, settings, true, L, H);
    EXPECT_EQ(log.resumed(), 0u);
    EXPECT_FALSE(std::filesystem::exists(path));  // nothing written before a test finishes
    analysis::RetrievalTestResult r;
    r.needleIndex = 1;
    r.length = 1000;
    r.depth = 50;
    r.spanFound = false;
    r.score = at::zeros({L, H}, at::kDouble);
    r.argmax = at::zeros({1, L, H}, at::kLong);
    r.generated = {5};
    log.append("main", r);
    log.append("control", r);
  }
  {
    analysis::RetrievalResumeLog log(path, settings, true, L, H);
    EXPECT_EQ(log.resumed(), 2u);
    ASSERT_NE(log.find("main", 1, 1000, 50), nullptr);
    EXPECT_FALSE(log.find("main", 1, 1000, 50)->spanFound);
    EXPECT_NE(log.find("control", 1, 1000, 50), nullptr);
    EXPECT_EQ(log.find("main", 0, 1000, 50), nullptr);
  }
  auto other = baseSettings();
  other.maskedHeads = {{1, 0}};
  try {
    analysis::RetrievalResumeLog log(path, analysis::retrievalSettingsJson(other), true, L, H);
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("masked_heads"), std::string::npos) << e.what();
  }
  // --no-resume: accepted, and the file starts over at the first append.
  analysis::RetrievalResumeLog fresh(path, analysis::retrievalSettingsJson(other), false, L, H);
  EXPECT_EQ(fresh.resumed(), 0u);
  mechscope::removeTree(dir);
}

TEST(RetrievalControl, RandomHeadsAreSameCountAndNeverRetrievalHeads) {
  at::Tensor score = at::zeros({6, 4}, at::kDouble);  // [layer, head]
  score[1][0] = 0.9;
  score[2][0] = 0.5;
  score[3][3] = 0.3;
  score[4][1] = 0.2;
  score[5][2] = 0.05;  // below the 0.1 threshold: not a retrieval head
  const auto top = analysis::rankHeads(score, 3);
  const std::set<HeadRef> retrieval = {{1, 0}, {2, 0}, {3, 3}, {4, 1}};
  std::set<std::vector<HeadRef>> draws;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const auto c = analysis::randomControlHeads(score, top, 3, 0.1, seed);
    ASSERT_EQ(c.size(), top.size());
    EXPECT_EQ((std::set<HeadRef>(c.begin(), c.end()).size()), 3u);  // distinct
    for (const auto& h : c) {
      EXPECT_EQ(retrieval.count(h), 0u) << toString(h);
      EXPECT_EQ(std::count(top.begin(), top.end(), h), 0);
    }
    EXPECT_EQ(c, analysis::randomControlHeads(score, top, 3, 0.1, seed));  // seeded
    draws.insert(c);
  }
  EXPECT_GT(draws.size(), 10u);  // the seed matters
  EXPECT_THROW(analysis::randomControlHeads(score, top, 21, 0.1, 0), InputError);  // 20 candidates only
}

TEST(RetrievalControl, PlantedTopHeadsBreakRetrievalWhileTheControlIsNonRetrieval) {
  const auto& f = attnPlanted();
  const auto np = planted::needlePrompt(120, 0.5, 11);
  analysis::RetrievalTest t = test::plantedRetrievalTest(np);
  analysis::RetrievalDecode d;
  d.maxNewTokens = static_cast<int>(np.answer.size());
  const auto clean = analysis::runRetrievalTest(*f.model, t, d);
  const auto top = analysis::rankHeads(clean.score, 2);
  std::set<HeadRef> planted;
  for (const auto& e : f.planted["expected"]["retrieval_heads"]) planted.insert({e[0].get<int>(), e[1].get<int>()});
  EXPECT_EQ((std::set<HeadRef>(top.begin(), top.end())), planted);
  const auto control = analysis::randomControlHeads(clean.score, top, 2, 0.1, 0);
  ASSERT_EQ(control.size(), 2u);
  for (const auto& h : control) EXPECT_LE(clean.score[h.layer][h.head].item<double>(), 0.1);
  d.maskedHeads = top;
  const auto masked = analysis::runRetrievalTest(*f.model, t, d);
  EXPECT_NE(masked.generated, clean.generated);  // the copy needs the retrieval heads
}

}  // namespace
}  // namespace mechscope::test
