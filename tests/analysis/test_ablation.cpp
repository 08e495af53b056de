// Ablation and attention forcing on the planted IOI task, with exact identities where they exist.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "analysis/ablation/ablation.hpp"
#include "core/common/errors.hpp"
#include "tests/analysis/causal_test_support.hpp"

namespace mechscope::analysis {
namespace {

TEST(Ablation, ZeroingTheMoversKillsTheLogitDifference) {
  const auto& m = *test::causalPlanted().model;
  const PatchInputs in = test::plantedInputs(planted::ioiPrompts(8, 4));
  AblationParams p;
  p.heads = {{3, 0}, {3, 1}};
  const AblationResult r = ablate(m, in.clean, in.correct, in.incorrect, p);
  EXPECT_GT(r.metricBefore, 10.0);
  EXPECT_LT(std::abs(r.metricAfter), 1.0);
  EXPECT_DOUBLE_EQ(r.accuracyBefore, 1.0);
  EXPECT_EQ(r.ablatedHeads, 2);
  EXPECT_EQ(r.perPromptAfter.size(0), in.clean.size(0));
  // Zeroing a head with no output (a uniform head of a deep layer) changes nothing.
  p.heads = {{20, 3}};
  const AblationResult none = ablate(m, in.clean, in.correct, in.incorrect, p);
  EXPECT_LE((none.perPromptAfter - none.perPromptBefore).abs().max().item<double>(), 1e-5);
}

TEST(Ablation, PairedResampleFromItselfIsIdentityAndMeanPerTemplateWorks) {
  const auto& m = *test::causalPlanted().model;
  const PatchInputs in = test::plantedInputs(planted::ioiPrompts(6, 8));
  AblationParams p;
  p.method = AblationMethod::Resample;
  p.heads = {{1, 1}, {2, 1}, {3, 0}};
  p.reference = in.clean;
  const AblationResult same = ablate(m, in.clean, in.correct, in.incorrect, p);
  EXPECT_LE((same.perPromptAfter - same.perPromptBefore).abs().max().item<double>(), 1e-4);
  // Mean over p_ABC per template: the S-inhibition head loses its INHIB signal → LD falls.
  p.method = AblationMethod::Mean;
  p.heads = {{2, 1}};
  p.reference = in.corrupt;
  p.perTemplate = true;
  for (int64_t b = 0; b < in.clean.size(0); ++b) {
    p.promptGroups.push_back(static_cast<int>(b % 2));
    p.referenceGroups.push_back(static_cast<int>(b % 2));
  }
  const AblationResult mean = ablate(m, in.clean, in.correct, in.incorrect, p);
  EXPECT_LT(mean.metricAfter, 0.6 * mean.metricBefore);
  // Pooled resampling runs and also breaks inhibition.
  p.method = AblationMethod::Resample;
  p.pooled = true;
  EXPECT_LT(ablate(m, in.clean, in.correct, in.incorrect, p).metricAfter, mean.metricBefore);
  // Knockout: keep the planted circuit, mean-ablate everything else over p_ABC: the LD survives.
  AblationParams k;
  k.method = AblationMethod::Mean;
  k.knockout = true;
  k.heads = {{1, 1}, {2, 1}, {3, 0}, {3, 1}, {0, 0}, {1, 2}};
  k.reference = in.corrupt;
  const AblationResult ko = ablate(m, in.clean, in.correct, in.incorrect, k);
  EXPECT_EQ(ko.ablatedHeads, 24 * 4 - 6);
  EXPECT_GT(ko.metricAfter, 0.8 * ko.metricBefore);
}

TEST(Ablation, UniformAndForcedAttention) {
  const auto& m = *test::causalPlanted().model;
  auto prompts = planted::ioiPrompts(8, 12);
  const PatchInputs in = test::plantedInputs(prompts);
  AblationParams u;
  u.method = AblationMethod::Uniform;
  u.heads = {{3, 0}, {3, 1}};
  u.positions = {-1};
  const AblationResult ru = ablate(m, in.clean, in.correct, in.incorrect, u);
  EXPECT_LT(ru.metricAfter, 0.5 * ru.metricBefore);
  // Force the movers onto the subject's first mention (the incorrect name): the answer flips.
  AblationParams f;
  f.method = AblationMethod::Force;
  f.heads = {{3, 0}, {3, 1}};
  f.positions = {-1};
  for (int64_t b = 0; b < in.clean.size(0); ++b) {
    const at::Tensor row = in.clean[b];
    std::vector<int64_t> keys;
    for (int64_t j = 0; j < row.size(0); ++j)
      if (row[j].item<int64_t>() == in.incorrect[b].item<int64_t>()) keys.push_back(j);
    f.forceKeys.push_back(keys);
  }
  const AblationResult rf = ablate(m, in.clean, in.correct, in.incorrect, f);
  EXPECT_DOUBLE_EQ(rf.accuracyBefore, 1.0);
  EXPECT_DOUBLE_EQ(rf.accuracyAfter, 0.0);
  EXPECT_LT(rf.metricAfter, -5.0);
  f.forceKeys = {{999}};
  EXPECT_THROW(ablate(m, in.clean, in.correct, in.incorrect, f), InputError);
  AblationParams bad;
  bad.method = AblationMethod::Mean;
  bad.heads = {{0, 0}};
  EXPECT_THROW(ablate(m, in.clean, in.correct, in.incorrect, bad), InputError);  // no reference
  EXPECT_THROW(parseAblationMethod("half"), InputError);
}

}  // namespace
}  // namespace mechscope::analysis
