// Issue #19: every generated IOI prompt reaches the causal analyses. On the trained GPT-2 (tests/data/
// trained/gpt2-ioi, IOI accuracy 1.0, real GPT-2 tokenizer) the generated dataset splits into several
// token-length groups; activation patching over the groups covers every prompt and equals patching each
// prompt alone (batch of one) within the fp32 summation-order bound of tests/common/rounding_bounds.hpp.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "analysis/common/datasets.hpp"
#include "analysis/patching/activation_patching.hpp"
#include "analysis/patching/patch_groups.hpp"
#include "core/model/hooked_transformer.hpp"
#include "tests/common/rounding_bounds.hpp"

namespace mechscope::analysis {
namespace {

namespace fs = std::filesystem;

fs::path lengthGroupsGpt2Dir() { return fs::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained" / "gpt2-ioi"; }

/// Row `b` of a group as a group of its own: the prompt run alone.
PatchGroup lengthGroupsRow(const PatchGroup& g, int64_t b) {
  PatchGroup one;
  one.inputs.clean = g.inputs.clean.narrow(0, b, 1);          // [1, pos]
  one.inputs.corrupt = g.inputs.corrupt.narrow(0, b, 1);      // [1, pos]
  one.inputs.correct = g.inputs.correct.narrow(0, b, 1);      // [1]
  one.inputs.incorrect = g.inputs.incorrect.narrow(0, b, 1);  // [1]
  one.promptIndex = {g.promptIndex.at(static_cast<size_t>(b))};
  one.templateIds = {g.templateIds.at(static_cast<size_t>(b))};
  return one;
}

/// The first `k` rows of every group, their prompt indices renumbered 0.. in dataset order (a smaller
/// dataset that still spans every length, for the costlier per-position sweep).
std::vector<PatchGroup> lengthGroupsHead(const std::vector<PatchGroup>& groups, int64_t k) {
  std::vector<PatchGroup> out;
  std::vector<int64_t> kept;
  for (const auto& g : groups) {
    PatchGroup h;
    for (int64_t b = 0; b < std::min<int64_t>(k, g.inputs.clean.size(0)); ++b) {
      const PatchGroup one = lengthGroupsRow(g, b);
      h.inputs = b == 0 ? one.inputs
                        : PatchInputs{at::cat({h.inputs.clean, one.inputs.clean}), at::cat({h.inputs.corrupt, one.inputs.corrupt}),
                                      at::cat({h.inputs.correct, one.inputs.correct}), at::cat({h.inputs.incorrect, one.inputs.incorrect}), {}};
      h.promptIndex.push_back(one.promptIndex[0]);
      h.templateIds.push_back(one.templateIds[0]);
      kept.push_back(one.promptIndex[0]);
    }
    out.push_back(std::move(h));
  }
  std::sort(kept.begin(), kept.end());
  for (auto& g : out)
    for (auto& i : g.promptIndex) i = std::lower_bound(kept.begin(), kept.end(), i) - kept.begin();
  return out;
}

TEST(IoiLengthGroups, TrainedGpt2PatchingCoversEveryPromptAndEqualsPerPromptLoop) {
  const fs::path dir = lengthGroupsGpt2Dir();
  if (!fs::exists(dir / "model.safetensors") || !fs::exists(dir / "tokenizer.json"))
    GTEST_SKIP() << dir << " is absent";
  const auto model = HookedTransformer::load(dir, LoadOptions{"cpu", "fp32"});
  const Tokenizer tok = Tokenizer::fromFile(dir);
  IoiOptions o;
  o.n = 28;
  o.seed = 19;
  CausalDataset ds = ioiDataset(tok, o);
  // BOS <|endoftext|> as the model was trained (and as the CLI prepends it: config.json's bos_token_id).
  tokenizeDataset(ds, &tok, tok.bosId() ? tok.bosId() : model->config().bosTokenId);
  int dropped = -1;
  const std::vector<PatchGroup> groups = toPatchGroups(ds, &dropped);
  EXPECT_EQ(dropped, 0);
  ASSERT_GT(groups.size(), 2u) << "the IOI templates have several GPT-2 token lengths";
  EXPECT_EQ(groupPromptCount(groups), o.n);

  // The model solves IOI: every prompt's argmax is the IO (README: accuracy 1.000).
  ForwardOptions last;
  last.logitsLastOnly = true;
  double maxAbsLogit = 0;
  int64_t maxLen = 0;
  for (const auto& g : groups) {
    const at::Tensor logits = model->forward(g.inputs.clean, last).logits.select(1, 0);  // [batch, vocab]
    EXPECT_TRUE(logits.argmax(-1).eq(g.inputs.correct).all().item<bool>());
    maxAbsLogit = std::max(maxAbsLogit, logits.abs().max().item<double>());
    maxLen = std::max(maxLen, g.inputs.clean.size(1));
  }

  for (const bool perPosition : {false, true}) {
    SCOPED_TRACE(perPosition ? "per position" : "all positions");
    PatchParams p;
    p.component = PatchComponent::HeadOut;
    p.perPosition = perPosition;
    // Per position: two prompts of every length (the loop below runs each prompt alone, cell by cell).
    const std::vector<PatchGroup> swept = perPosition ? lengthGroupsHead(groups, 2) : groups;
    const PatchResult grouped = activationPatchGroups(*model, swept, p);
    const int64_t n = groupPromptCount(swept);
    ASSERT_EQ(grouped.metricPatched.size(-1), n) << "every prompt is analysed";
    ASSERT_EQ(grouped.metricCleanPerPrompt.size(0), n);

    // The loop: each prompt alone, put at its dataset index.
    const at::Tensor clean = grouped.metricCleanPerPrompt.to(at::kDouble);
    at::Tensor aloneClean = at::empty({n}, at::kDouble), aloneCorrupt = at::empty({n}, at::kDouble);
    at::Tensor alonePatched = at::full(grouped.metricPatched.sizes(), std::nan(""), at::kDouble);  // [L, H, (pos,) n]
    for (const auto& g : swept)
      for (int64_t b = 0; b < g.inputs.clean.size(0); ++b) {
        const PatchResult one = activationPatch(*model, lengthGroupsRow(g, b).inputs, p);
        const int64_t i = g.promptIndex[static_cast<size_t>(b)];
        aloneClean[i] = one.metricClean;
        aloneCorrupt[i] = one.metricCorrupt;
        at::Tensor dst = alonePatched.select(-1, i);  // [L, H, (pos)]
        if (perPosition) dst = dst.narrow(-1, 0, g.inputs.clean.size(1));
        dst.copy_(one.metricPatched.select(-1, 0));
      }

    // Each metric is a logit difference of one forward pass over ≤ maxLen tokens, in two summation orders.
    const double bound = test::logitDifferenceOrderBound(model->config(), maxLen, maxAbsLogit);
    EXPECT_LE((clean - aloneClean).abs().max().item<double>(), bound);
    EXPECT_LE((grouped.metricCorruptPerPrompt.to(at::kDouble) - aloneCorrupt).abs().max().item<double>(), bound);
    const at::Tensor got = grouped.metricPatched.to(at::kDouble);
    // Positions past a prompt's length are NaN in both (no prompt is padded).
    EXPECT_TRUE(got.isnan().eq(alonePatched.isnan()).all().item<bool>());
    const at::Tensor both = got.isnan().logical_not();
    const double patchedErr = at::where(both, (got - alonePatched).abs(), at::zeros_like(got)).max().item<double>();
    EXPECT_LE(patchedErr, bound);

    // Scores: means over every prompt (weighted by group size) of values each within `bound`, so the
    // means are too; the normalisation (x − corrupt)/(clean − corrupt) then moves them by at most
    // (|Δx| + |Δcorrupt|)/gap + |score|·(|Δclean| + |Δcorrupt|)/gap, with the gap shrunk by 2·bound.
    const double gap = std::abs(grouped.metricClean - grouped.metricCorrupt) - 2 * bound;
    ASSERT_GT(gap, 0);
    const double maxScore = grouped.scores.abs().max().item<double>();
    const double scoreBound = (2 + 2 * maxScore) * bound / gap;
    const double meanClean = aloneClean.mean().item<double>(), meanCorrupt = aloneCorrupt.mean().item<double>();
    at::Tensor meanPatched = at::where(both, alonePatched, at::zeros_like(alonePatched)).sum(-1) / both.sum(-1).to(at::kDouble);
    const at::Tensor loopScores = normalise(meanPatched, meanClean, meanCorrupt, p.normalisation);
    EXPECT_LE((grouped.scores.to(at::kDouble) - loopScores).abs().max().item<double>(), scoreBound);
    EXPECT_NEAR(grouped.metricClean, meanClean, bound);
    EXPECT_GT(grouped.metricClean, grouped.metricCorrupt);
  }
}

}  // namespace
}  // namespace mechscope::analysis
