// Constraint attention: α, ᾱ, β equal an independent computation from materialised patterns;
// Δβ is β(baseline) − β; bad spans are InputErrors.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "analysis/constraint/constraint_attention.hpp"
#include "core/common/errors.hpp"
#include "tests/analysis/test_attention_stats_support.hpp"

namespace mechscope::test {
namespace {

TEST(ConstraintAttention, EqualsMaterialisedPatternsOnFixtures) {
  for (const std::string fam : {"gpt2", "llama", "qwen3", "mistral"}) {
    const auto dir = fixtureModel(fam);
    if (dir.empty()) GTEST_SKIP() << "fixtures absent";
    auto m = HookedTransformer::load(dir);
    const auto ids = randomIds(40, m->config().dVocab, 5);
    const std::vector<int64_t> C = {3, 4, 5, 11, 12, 4};  // duplicate counts once
    const std::vector<int64_t> answer = {30, 31, 32, 33, 34, 35, 36, 37, 38};
    const auto res = analysis::runConstraintAttention(*m, ids, C, answer);
    const auto pats = materialisedPatterns(*m, ids);
    const at::Tensor cols = at::tensor(std::vector<int64_t>{3, 4, 5, 11, 12}, at::kLong);
    at::Tensor alpha = at::zeros({static_cast<int64_t>(pats.size()), 40}, at::kDouble);
    for (size_t l = 0; l < pats.size(); ++l)
      alpha[static_cast<int64_t>(l)] = pats[l].mean(0).index_select(1, cols).sum(1) / 5.0;  // [query]
    const double scale = alpha.abs().max().item<double>();
    EXPECT_LT((res.alpha - alpha).abs().max().item<double>(), 1e-5 * scale) << fam;
    EXPECT_LT((res.alphaMean - alpha.mean(0)).abs().max().item<double>(), 1e-5 * scale) << fam;
    const at::Tensor beta = alpha.narrow(1, 30, 9).mean(1);
    EXPECT_LT((res.beta - beta).abs().max().item<double>(), 1e-5 * scale) << fam;
    EXPECT_EQ(res.constraintPositions, (std::vector<int64_t>{3, 4, 5, 11, 12}));
    // Δβ against a baseline run.
    std::vector<double> base(static_cast<size_t>(beta.size(0)), 0.5);
    const auto out = analysis::constraintToResult(res, base);
    EXPECT_NEAR(out.json["delta_beta"][0].get<double>(), 0.5 - beta[0].item<double>(), 1e-5);
    EXPECT_EQ(out.json["alpha"].size(), pats.size());
    EXPECT_EQ(out.json["alpha"][0].size(), 40u);
  }
}

TEST(ConstraintAttention, BadPositionsAreInputErrors) {
  const auto& f = attnPlanted();
  const std::vector<int64_t> ids = {0, 5, 6, 7};
  EXPECT_THROW(analysis::runConstraintAttention(*f.model, ids, {}, {}), InputError);
  EXPECT_THROW(analysis::runConstraintAttention(*f.model, ids, {9}, {}), InputError);
  EXPECT_THROW(analysis::runConstraintAttention(*f.model, ids, {1}, {4}), InputError);
}

}  // namespace
}  // namespace mechscope::test
