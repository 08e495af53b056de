// Ablation and attention forcing on the planted IOI task, with exact identities where they exist.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "analysis/ablation/ablation.hpp"
#include "analysis/ablation/ablation_sweep.hpp"
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

/// Zero ablation of each head alone, by hand: hook_z's head slice set to 0 in a plain forward, the logit
/// difference of the last position in fp64, averaged over the prompts → [layer, head].
at::Tensor ablationSweepZeroByHand(const HookedTransformer& m, const PatchInputs& in) {
  const int L = m.config().nLayers, H = m.config().nHeads;
  at::Tensor out = at::zeros({L, H}, at::kDouble);
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < H; ++h) {
      HookSet hooks;
      hooks.add("blocks." + std::to_string(l) + ".attn.hook_z", [h](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
        at::Tensor o = t.clone();  // [batch, pos, head, d_head]
        o.select(2, h).zero_();
        return o;
      });
      const at::Tensor logits = m.forward(in.clean, {}, &hooks).logits;  // [batch, pos, vocab]
      const at::Tensor last = logits.select(1, logits.size(1) - 1).to(at::kDouble).cpu();  // [batch, vocab]
      double sum = 0;
      for (int64_t b = 0; b < last.size(0); ++b)
        sum += last[b][in.correct[b].item<int64_t>()].item<double>() - last[b][in.incorrect[b].item<int64_t>()].item<double>();
      out[l][h] = sum / static_cast<double>(last.size(0));
    }
  return out;
}

// Issue #21: the head sweep (the CLI's `ablate --sweep`, the GUI's ablation sweep) is `ablate` of each
// head alone, for every method (zero: every head; the others: the planted circuit's layers and a spread
// of deeper heads, to keep the test short), and zero ablation is what zeroing the head's z by hand gives.
TEST(Ablation, HeadSweepEqualsAblateOfEachHeadAlone) {
  const auto& m = *test::causalPlanted().model;
  const PatchInputs in = test::plantedInputs(planted::ioiPrompts(4, 4));
  const int L = m.config().nLayers, H = m.config().nHeads;
  std::vector<HeadRef> some;
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < H; ++h)
      if (l < 4 || (l % 5 == 0 && h == l % H)) some.push_back({l, h});
  std::vector<AblationParams> methods(5);
  methods[1].method = AblationMethod::Mean;
  methods[1].reference = in.corrupt;
  methods[2].method = AblationMethod::Resample;
  methods[2].reference = in.corrupt;
  methods[2].pooled = true;
  methods[2].seed = 7;
  methods[3].method = AblationMethod::Uniform;
  methods[3].positions = {-1};
  methods[4].method = AblationMethod::Force;
  methods[4].forceKeys = {{1}};
  methods[4].positions = {-1};
  AblationSweepResult zero;
  for (AblationParams base : methods) {
    base.heads = {{5, 1}};  // ignored by the sweep
    const AblationSweepResult s = ablationHeadSweep(m, in.clean, in.correct, in.incorrect, base);
    if (base.method == AblationMethod::Zero) zero = s;
    ASSERT_EQ(s.metricAfter.sizes(), (std::vector<int64_t>{L, H}));
    ASSERT_EQ(s.perPromptAfter.sizes(), (std::vector<int64_t>{L, H, in.clean.size(0)}));
    std::vector<HeadRef> heads = some;
    if (base.method == AblationMethod::Zero) {
      heads.clear();
      for (int l = 0; l < L; ++l)
        for (int h = 0; h < H; ++h) heads.push_back({l, h});
    }
    for (const HeadRef& head : heads) {
      AblationParams one = base;
      one.heads = {head};
      const AblationResult r = ablate(m, in.clean, in.correct, in.incorrect, one);
      const double tol = 1e-5 * std::max(1.0, std::abs(r.metricAfter));  // fp32 sums: far below
      EXPECT_NEAR(s.metricBefore, r.metricBefore, 1e-5 * std::max(1.0, std::abs(r.metricBefore)));
      EXPECT_NEAR(s.metricAfter[head.layer][head.head].item<double>(), r.metricAfter, tol) << toString(base.method) << " " << toString(head);
      EXPECT_LE((s.perPromptAfter[head.layer][head.head] - r.perPromptAfter).abs().max().item<double>(), tol);
    }
  }
  // Zero ablation by hand.
  const at::Tensor hand = ablationSweepZeroByHand(m, in);
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < H; ++h)
      EXPECT_NEAR(zero.metricAfter[l][h].item<double>(), hand[l][h].item<double>(), 1e-5 * std::max(1.0, std::abs(hand[l][h].item<double>())))
          << l << "." << h;
  // The largest drops are heads of the planted IOI circuit (1.1, 2.1, 3.0, 3.1).
  const auto top = largestAblationDrops(zero, 2);
  ASSERT_EQ(top.size(), 2u);
  for (const auto& d : top) {
    EXPECT_TRUE(d.head == (HeadRef{1, 1}) || d.head == (HeadRef{2, 1}) || d.head == (HeadRef{3, 0}) || d.head == (HeadRef{3, 1}))
        << toString(d.head) << " drop " << d.drop;
    EXPECT_NEAR(d.drop, zero.metricBefore - zero.metricAfter[d.head.layer][d.head.head].item<double>(), 1e-12);
  }
  EXPECT_GE(top[0].drop, top[1].drop);
  EXPECT_GT(top[1].drop, 1.0);
}

TEST(Ablation, HeadSweepReportsEveryHeadCancelsAndRejectsKnockout) {
  const auto& m = *test::causalPlanted().model;
  const PatchInputs in = test::plantedInputs(planted::ioiPrompts(4, 4));
  const long long total = static_cast<long long>(m.config().nLayers) * m.config().nHeads;
  RunContext ctx;
  std::vector<long long> done;
  ctx.progress = [&](const Progress& p) {
    EXPECT_EQ(p.total, total);
    EXPECT_EQ(p.stage, "head sweep");
    done.push_back(p.done);
  };
  (void)ablationHeadSweep(m, in.clean, in.correct, in.incorrect, {}, &ctx);
  ASSERT_EQ(done.size(), static_cast<size_t>(total + 2));  // start, one per head, end
  EXPECT_EQ(done.back(), total);
  RunContext cancel;
  int seen = 0;
  cancel.progress = [&](const Progress&) {
    if (++seen == 5) cancel.cancel->cancel();
  };
  EXPECT_THROW(ablationHeadSweep(m, in.clean, in.correct, in.incorrect, {}, &cancel), Cancelled);
  EXPECT_EQ(seen, 5);
  AblationParams ko;
  ko.knockout = true;
  EXPECT_THROW(ablationHeadSweep(m, in.clean, in.correct, in.incorrect, ko), InputError);
  AblationParams mean;
  mean.method = AblationMethod::Mean;  // no reference
  EXPECT_THROW(ablationHeadSweep(m, in.clean, in.correct, in.incorrect, mean), InputError);
}

}  // namespace
// Uniform ablation gives a head the attention row the model allows: uniform over the keys inside the
// sliding window (issue 18), not over every earlier key. On the trained sliding-window Mistral
// (window 64) with 150 tokens, the ablated head's row i is 1/min(i + 1, 64) on keys i − 63..i, 0 elsewhere.
TEST(Ablation, UniformRowsStayInsideTheSlidingWindow) {
  const auto dir = std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained" / "mistral-sw";
  ASSERT_TRUE(std::filesystem::exists(dir / "config.json")) << dir;
  const auto model = HookedTransformer::load(dir);
  const int64_t P = 150, W = 64;
  ASSERT_EQ(model->config().slidingWindow.value_or(0), W);
  at::manual_seed(5);
  const at::Tensor tokens = at::randint(3, 1000, {1, P}, at::kLong);
  AblationParams u;
  u.method = AblationMethod::Uniform;
  u.heads = {{1, 2}};
  HookSet hooks = ablationHooks(*model, tokens, u);
  at::Tensor written;  // the pattern after the ablation hook (hooks run in insertion order)
  hooks.add("blocks.1.attn.hook_pattern", [&written](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
    written = t.clone();  // [batch, head, query, key]
    return std::nullopt;
  });
  (void)model->forward(tokens, {}, &hooks);
  ASSERT_TRUE(written.defined());
  const at::Tensor p = written[0][2].to(at::kDouble);  // [query, key]
  const at::Tensor i = at::arange(P).unsqueeze(1), j = at::arange(P).unsqueeze(0);
  const at::Tensor inside = (j <= i).logical_and(i - j < W);
  const at::Tensor expected = inside.to(at::kDouble) / inside.sum(-1, true).to(at::kDouble);
  EXPECT_LE((p - expected).abs().max().item<double>(), 1e-6);  // fp32 1/n: ≤ ½ ulp of 1/64
}

}  // namespace mechscope::analysis
