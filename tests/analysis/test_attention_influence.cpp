// AttentionInfluence (Hua et al. 2025; issue 18) against the independent reference port
// (scripts/reference/attention_influence_ref.py, a pure-PyTorch forward that equals transformers' to
// 1.2e-5) on the trained models, including the sliding-window Mistral, whose uniform mask must stay
// inside the window.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "analysis/attention_influence/attention_influence.hpp"
#include "core/common/errors.hpp"
#include "tests/common/param_names.hpp"

namespace mechscope::analysis {
namespace {

std::filesystem::path trainedDir() { return std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained"; }

class AttentionInfluenceReference : public ::testing::TestWithParam<std::string> {};

TEST_P(AttentionInfluenceReference, TokenLossesEqualTheReferencePort) {
  const auto model = HookedTransformer::load(trainedDir() / GetParam());
  std::ifstream in(trainedDir() / "references" / ("attention_influence_" + GetParam() + ".json"));
  ASSERT_TRUE(in) << "reference JSON missing for " << GetParam();
  const nlohmann::json ref = nlohmann::json::parse(in);
  AttentionInfluenceOptions opts;
  for (const auto& h : ref["heads"]) {
    const auto s = h.get<std::string>();
    opts.heads.push_back({std::stoi(s.substr(0, s.find('.'))), std::stoi(s.substr(s.find('.') + 1))});
  }
  std::vector<std::vector<int64_t>> rows;
  for (const auto& r : ref["rows"]) rows.push_back(r["ids"].get<std::vector<int64_t>>());
  const AttentionInfluenceResult got = runAttentionInfluence(*model, rows, opts);
  // A token loss is lse(z) − z_y: it moves by at most 2·max|Δz|. Our logits are within
  // max(1e-4, 3e-6·|z|) of Hugging Face's (TrainedParity) and the port's within 1.2e-5 of them, so
  // 2·(1e-4 + 1.2e-5) plus the fp64 log-softmax of fp32 logits bounds every token: 3e-4.
  constexpr double kTokenTol = 3e-4;
  for (size_t r = 0; r < rows.size(); ++r) {
    SCOPED_TRACE(GetParam() + " row " + std::to_string(r));
    const auto& rr = ref["rows"][r];
    const at::Tensor base = at::tensor(rr["token_loss_base"].get<std::vector<double>>(), at::kDouble);
    const at::Tensor masked = at::tensor(rr["token_loss_masked"].get<std::vector<double>>(), at::kDouble);
    ASSERT_EQ(got.tokenLossBase[r].numel(), base.numel());
    EXPECT_LE((got.tokenLossBase[r] - base).abs().max().item<double>(), kTokenTol);
    EXPECT_LE((got.tokenLossMasked[r] - masked).abs().max().item<double>(), kTokenTol);
    const double lb = rr["loss_base"].get<double>(), lm = rr["loss_masked"].get<double>();
    EXPECT_NEAR(got.lossBase[static_cast<int64_t>(r)].item<double>(), lb, kTokenTol);
    EXPECT_NEAR(got.lossMasked[static_cast<int64_t>(r)].item<double>(), lm, kTokenTol);
    // score = (Lm − Lb)/Lb moves by at most (|ΔLm| + |ΔLb|·Lm/Lb)/Lb.
    EXPECT_NEAR(got.score[static_cast<int64_t>(r)].item<double>(), rr["score"].get<double>(), kTokenTol * (1 + lm / lb) / lb);
    // The mask does something on a trained model (the port's own numbers: ≥ 1.7 % loss increase).
    EXPECT_GT(lm - lb, 1e-2);
  }
}

INSTANTIATE_TEST_SUITE_P(Trained, AttentionInfluenceReference, ::testing::Values("llama2-niah", "mistral-sw", "gpt2-ioi"),
                         test::identifierName);

TEST(AttentionInfluence, TokenLossesAreTheNegativeLogLikelihoodOfTheNextToken) {
  // logits [1, 3, 2]: row 0 predicts id 1 with p = e^2/(1+e^2), row 1 predicts id 0 with p = 1/2.
  const at::Tensor logits = at::tensor({0.0, 2.0, 1.0, 1.0, 5.0, 5.0}, at::kFloat).view({1, 3, 2});
  const at::Tensor ids = at::tensor({0, 1, 0}, at::kLong);
  const at::Tensor l = tokenLosses(logits, ids);
  ASSERT_EQ(l.numel(), 2);
  EXPECT_NEAR(l[0].item<double>(), std::log1p(std::exp(-2.0)), 1e-7);
  EXPECT_NEAR(l[1].item<double>(), std::log(2.0), 1e-7);
}

TEST(AttentionInfluence, BadInputIsAnInputError) {
  const auto model = HookedTransformer::load(trainedDir() / "gpt2-ioi");
  AttentionInfluenceOptions none;
  EXPECT_THROW((void)runAttentionInfluence(*model, {{1, 2, 3}}, none), InputError);
  AttentionInfluenceOptions outside;
  outside.heads = {{9, 0}};
  EXPECT_THROW((void)runAttentionInfluence(*model, {{1, 2, 3}}, outside), InputError);
  AttentionInfluenceOptions ok;
  ok.heads = {{0, 0}};
  EXPECT_THROW((void)runAttentionInfluence(*model, {{1}}, ok), InputError);
  ok.method = AblationMethod::Mean;
  EXPECT_THROW((void)runAttentionInfluence(*model, {{1, 2, 3}}, ok), InputError);
}

}  // namespace
}  // namespace mechscope::analysis
