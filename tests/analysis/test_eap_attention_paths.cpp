// Edge attribution on long prompts (issue #22) runs its forwards and backwards on an attention path that keeps
// no [pos, key] pattern for the backward: the chunked path, whose backward recomputes each query tile's scores
// (core/model/recomputed_attention.hpp), and, with LibTorch ≥ 2, the fused kernel. Every edge score of EAP
// and EAP-IG on those paths equals the explicit path's (which keeps the whole softmax for autograd) in fp64, on
// trained models with grouped queries (llama2-niah) and a sliding window shorter than the prompt (mistral-sw,
// where the window masks keys inside the tile), and on gpt-oss (learned sinks, alternating windows, experts). Bound: the models run in fp64, but attention probabilities are
// formed in fp32 on every path (HF's convention: softmax(dtype=float32)), by max-subtracted softmax on the
// explicit path and as exp(s − lse) on the chunked one; each probability then differs by up to ~(|s| + 2)·u
// relative (u = 6e-8, |s| ≲ 30 here), i.e. ≲ 2e-6, carried through 4 layers forward and back: ≲ 1e-4 of the
// largest score (observed ≤ 5e-6). A wrong term in the recomputed backward moves scores by O(1) relative.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <string>

#include "analysis/eap/edge_attribution.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {
namespace {

namespace fs = std::filesystem;

/// Two prompt pairs of `positions` random tokens; the corrupted prompts differ in a stretch before the end.
PatchGroup longRandomGroup(const HookedTransformer& m, int64_t positions) {
  at::manual_seed(11);
  const int64_t V = m.config().dVocab;
  PatchGroup g;
  g.inputs.clean = at::randint(V, {2, positions}, at::kLong);
  g.inputs.corrupt = g.inputs.clean.clone();
  g.inputs.corrupt.narrow(1, positions / 3, positions / 3).random_(V);
  g.inputs.correct = at::randint(V, {2}, at::kLong);
  g.inputs.incorrect = (g.inputs.correct + 7) % V;
  g.promptIndex = {0, 1};
  g.templateIds = {-1, -1};
  return g;
}

class EapAttentionPath : public ::testing::TestWithParam<std::string> {};

TEST_P(EapAttentionPath, ChunkedAndDefaultPathsEqualExplicit) {
  const fs::path dir = fs::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / GetParam();
  if (!fs::exists(dir / "config.json")) GTEST_SKIP() << dir << " absent";
  const auto model = HookedTransformer::load(dir, LoadOptions{"cpu", "fp64"});
  const int64_t positions = 96;  // > mistral-sw's window (64) and gpt-oss's (8)
  ASSERT_LT(model->config().windowOf(0), positions);  // 0 without a window
  const std::vector<PatchGroup> groups{longRandomGroup(*model, positions)};
  for (const EapMethod method : {EapMethod::Eap, EapMethod::EapIg}) {
    EapParams p;
    p.method = method;
    p.steps = 3;
    p.attention = AttentionPath::Explicit;
    const EapResult ref = edgeAttribution(*model, groups, p);
    const double scale = ref.scores.abs().max().item<double>();
    ASSERT_GT(scale, 1e-3) << "the scores are not all ~0";
    for (const AttentionPath path : {AttentionPath::Chunked, AttentionPath::Auto}) {
      p.attention = path;
      const EapResult r = edgeAttribution(*model, groups, p);
      const double err = (r.scores - ref.scores).abs().max().item<double>();
      EXPECT_LE(err, 1e-4 * scale) << toString(method) << " path " << static_cast<int>(path) << ": max |Δscore| " << err
                                   << " of max |score| " << scale;
      EXPECT_NEAR(r.metricClean, ref.metricClean, 1e-5 * std::max(1.0, std::abs(ref.metricClean)));
    }
  }
}

// Scores are accumulated position slice by position slice (long inputs never hold Δa or the receivers' input
// gradients of the whole prompt): slices of 7 positions, which split the 96 unevenly, give the one-slice scores.
TEST_P(EapAttentionPath, PositionSlicesGiveTheWholePromptsScores) {
  const fs::path dir = fs::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / GetParam();
  if (!fs::exists(dir / "config.json")) GTEST_SKIP() << dir << " absent";
  const auto model = HookedTransformer::load(dir, LoadOptions{"cpu", "fp64"});
  const std::vector<PatchGroup> groups{longRandomGroup(*model, 96)};
  EapParams p;
  p.method = EapMethod::EapIg;
  p.steps = 4;
  p.maxBatchRows = 4;  // two steps per pass: the step sum and the slices meet
  p.positionSlice = 96;
  const EapResult whole = edgeAttribution(*model, groups, p);
  p.positionSlice = 7;
  const EapResult sliced = edgeAttribution(*model, groups, p);
  const double scale = whole.scores.abs().max().item<double>();
  ASSERT_GT(scale, 1e-3);
  EXPECT_LE((sliced.scores - whole.scores).abs().max().item<double>(), 1e-10 * scale);
}

// Trained models, and gpt-oss (learned sinks in the recomputed backward's normaliser, alternating windows, MoE).
INSTANTIATE_TEST_SUITE_P(Models, EapAttentionPath, ::testing::Values("trained/llama2-niah", "trained/mistral-sw", "families/gpt_oss"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

}  // namespace
}  // namespace mechscope::analysis
