// The logit lens (issue #22) against the independent reference port (scripts/reference/logit_lens_ref.py:
// its own forward, final norm and unembedding in PyTorch) on the three trained families, every position,
// every readout row (embeddings, after each block), top-5 tokens and the next token's and two targets'
// probability and rank; and its bad input.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "analysis/logit_lens/logit_lens.hpp"
#include "core/common/errors.hpp"
#include "core/model/hooked_transformer.hpp"
#include "tests/common/param_names.hpp"

namespace mechscope::analysis {
namespace {

std::filesystem::path lensTrainedDir() { return std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained"; }

// Error budget. Both sides compute fp32 logits from bf16-stored weights; the C++ forward's residuals agree
// with transformers' to the parity bound (TrainedParity: logits within max(1e-4, 3e-6·|z|), |z| < 40 here:
// 1.2e-4) and the port's to 1.2e-5, so a logit differs by δ ≤ 1.4e-4 and a log-probability by ≤ 2δ. A
// probability p then moves by ≤ p·(e^{2δ} − 1) ≤ 3e-4·p ≤ 3e-4. Orders (top-k ids, ranks) can only differ
// where the reference's own gap between the two tokens is below 2δ: there they are not compared.
constexpr double kProbTol = 3e-4;
constexpr double kGap = 3e-4;

class LogitLensReference : public ::testing::TestWithParam<std::string> {};

TEST_P(LogitLensReference, EveryRowAndPositionEqualsThePythonPort) {
  const auto dir = lensTrainedDir() / GetParam();
  std::ifstream in(lensTrainedDir() / "references" / ("logit_lens_" + GetParam() + ".json"));
  if (!std::filesystem::exists(dir / "model.safetensors") || !in) GTEST_SKIP() << dir << " or its reference is absent";
  const nlohmann::json ref = nlohmann::json::parse(in);
  const auto model = HookedTransformer::load(dir);
  LogitLensParams p;
  p.positions.clear();  // every position
  p.topK = ref["top_k"].get<int64_t>();
  p.targetIds = ref["target_ids"].get<std::vector<int64_t>>();
  const auto ids = ref["ids"].get<std::vector<int64_t>>();
  const LogitLensResult r = logitLens(*model, ids, p);
  const int64_t rows = model->config().nLayers + 1, n = static_cast<int64_t>(ids.size());
  ASSERT_EQ(r.topIds.size(0), rows);
  ASSERT_EQ(r.topIds.size(1), n);
  ASSERT_EQ(static_cast<int64_t>(ref["top_ids"].size()), rows);
  int64_t comparedIds = 0, comparedRanks = 0;
  for (int64_t row = 0; row < rows; ++row)
    for (int64_t q = 0; q < n; ++q) {
      SCOPED_TRACE(GetParam() + " row " + std::to_string(row) + " position " + std::to_string(q));
      const auto& probs = ref["top_probs"][row][q];  // k + 1 values, descending
      for (int64_t k = 0; k < p.topK; ++k) {
        EXPECT_NEAR(r.topProbs[row][q][k].item<double>(), probs[k].get<double>(), kProbTol);
        // The k-th id is defined when it is separated from both neighbours (log-prob gap ≥ 2δ).
        const double above = k == 0 ? 1.0 : std::log(probs[k - 1].get<double>()) - std::log(probs[k].get<double>());
        const double below = std::log(probs[k].get<double>()) - std::log(probs[k + 1].get<double>());
        if (above > kGap && below > kGap) {
          EXPECT_EQ(r.topIds[row][q][k].item<int64_t>(), ref["top_ids"][row][q][k].get<int64_t>()) << "k " << k;
          ++comparedIds;
        }
      }
      if (q + 1 < n) {
        EXPECT_NEAR(r.nextProb[row][q].item<double>(), ref["next_token_prob"][row][q].get<double>(), kProbTol);
        if (ref["next_token_gap"][row][q].get<double>() > kGap) {
          EXPECT_EQ(r.nextRank[row][q].item<int64_t>(), ref["next_token_rank"][row][q].get<int64_t>());
          ++comparedRanks;
        }
      } else {
        EXPECT_TRUE(std::isnan(r.nextProb[row][q].item<double>()));
        EXPECT_EQ(r.nextRank[row][q].item<int64_t>(), 0);
      }
      for (size_t t = 0; t < p.targetIds.size(); ++t) {
        const auto ti = static_cast<int64_t>(t);
        EXPECT_NEAR(r.targetProb[row][q][ti].item<double>(), ref["target_prob"][row][q][t].get<double>(), kProbTol);
        if (ref["target_gap"][row][q][t].get<double>() > kGap) {
          EXPECT_EQ(r.targetRank[row][q][ti].item<int64_t>(), ref["target_rank"][row][q][t].get<int64_t>());
          ++comparedRanks;
        }
      }
    }
  // Most orders are well separated, so the comparison is not vacuous (ranks among the many untrained tokens
  // that share one logit are ties and are skipped: about a third of them on the Llama-shaped models).
  EXPECT_GT(comparedIds, rows * n * p.topK * 9 / 10);
  EXPECT_GT(comparedRanks, rows * n);
}

INSTANTIATE_TEST_SUITE_P(Trained, LogitLensReference, ::testing::Values("gpt2-ioi", "llama2-niah", "mistral-sw"), test::identifierName);

TEST(LogitLens, LastRowIsTheModelsOwnPredictionAndChosenPositionsAreSlices) {
  const auto dir = lensTrainedDir() / "gpt2-ioi";
  if (!std::filesystem::exists(dir / "model.safetensors")) GTEST_SKIP() << dir << " is absent";
  const auto model = HookedTransformer::load(dir);
  const std::vector<int64_t> ids = {50256, 464, 3797, 3332, 319, 262, 2603, 13, 383};
  const auto logits = model->forward(at::tensor(ids, at::kLong).unsqueeze(0)).logits.select(0, 0).to(at::kDouble);  // [pos, vocab]
  LogitLensParams all;
  all.positions.clear();
  all.topK = 3;
  const LogitLensResult r = logitLens(*model, ids, all);
  const int64_t L = model->config().nLayers;
  for (int64_t q = 0; q < static_cast<int64_t>(ids.size()); ++q) {
    const auto top = at::softmax(logits[q], -1).topk(3);
    for (int64_t k = 0; k < 3; ++k) EXPECT_NEAR(r.topProbs[L][q][k].item<double>(), std::get<0>(top)[k].item<double>(), 1e-6) << q;
  }
  // Positions -1 and 2 are the same numbers as in the all-positions run, up to the unembedding's blocking
  // (another matrix shape sums in another order): fp32 logits within a few ulp (|z| < 40: 4e-6·2), so p within 1e-5·p.
  LogitLensParams two = all;
  two.positions = {2, -1};
  const LogitLensResult s = logitLens(*model, ids, two);
  ASSERT_EQ(s.positions, (std::vector<int64_t>{2, 8}));
  EXPECT_TRUE(at::equal(s.topIds.select(1, 0), r.topIds.select(1, 2)));
  EXPECT_TRUE(at::allclose(s.topProbs.select(1, 1), r.topProbs.select(1, 8), 1e-5, 0.0));
}

TEST(LogitLens, BadInputIsAnInputError) {
  const auto dir = lensTrainedDir() / "gpt2-ioi";
  if (!std::filesystem::exists(dir / "model.safetensors")) GTEST_SKIP() << dir << " is absent";
  const auto model = HookedTransformer::load(dir);
  const std::vector<int64_t> ids = {50256, 464, 3797};
  LogitLensParams p;
  p.positions = {3};
  EXPECT_THROW((void)logitLens(*model, ids, p), InputError);
  p.positions = {-1};
  p.targetIds = {model->config().dVocab};
  EXPECT_THROW((void)logitLens(*model, ids, p), InputError);
  p.targetIds = {};
  p.topK = 0;
  EXPECT_THROW((void)logitLens(*model, ids, p), InputError);
}

}  // namespace
}  // namespace mechscope::analysis
