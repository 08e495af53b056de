// Analyses that recompute parts of a block on issue #23's dense families (post-norms, no pre-norms,
// whole-projection q/k norms, soft-caps, √d embeddings): each is checked against the forward pass's own
// hooks on the repository fixtures (tests/data/families).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "analysis/attribution/direct_logit.hpp"
#include "analysis/common/final_norm.hpp"
#include "analysis/ov_qk/ov_qk.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {
namespace dense_family_analyses_test {

std::filesystem::path familyDir(const std::string& name) {
  return std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "families" / name;
}

TEST(DenseFamilyAnalyses, DlaHeadsSumToThePostNormedAttentionOutput) {
  // No biases and no final soft-cap: the residual is embed + Σ attn_out + Σ mlp_out, so with ln1_post's
  // scale frozen the heads of a layer sum to its hook_attn_out's attribution and `rest` is the embedding's.
  for (const char* family : {"olmo2", "gemma3"}) {
    auto m = HookedTransformer::load(familyDir(family));
    const ModelConfig& c = m->config();
    const at::Tensor tokens = at::arange(3, 23, at::kLong).view({2, 10});
    const at::Tensor correct = at::tensor({5L, 9L}), incorrect = at::tensor({7L, 11L});
    const DirectLogitResult r = directLogitAttribution(*m, tokens, correct, incorrect);
    const ActivationCache cache = m->runWithCache(tokens, {"hook_embed", "blocks.*.hook_attn_out", "blocks.*.hook_resid_post"});
    const at::Tensor wU = m->weights().wU.to(at::kDouble);
    const at::Tensor dir = (wU.index_select(0, correct) - wU.index_select(0, incorrect)) * m->weights().lnFinalW.to(at::kDouble);
    const at::Tensor fin = cache.get(fmt::format("blocks.{}.hook_resid_post", c.nLayers - 1)).select(1, -1).to(at::kDouble);
    const at::Tensor scale = at::sqrt(fin.pow(2).mean(-1) + c.normEps);  // [batch]
    auto attribute = [&](const at::Tensor& x) { return (x.select(1, -1).to(at::kDouble) * dir).sum(-1) / scale; };  // [batch]
    for (int l = 0; l < c.nLayers; ++l) {
      const at::Tensor heads = r.perPromptHeads.select(1, l).sum(1);  // [batch]
      EXPECT_LT((heads - attribute(cache.at("attn_out", l))).abs().max().item<double>(), 1e-4) << family << " layer " << l;
    }
    EXPECT_LT((r.rest - attribute(cache.get("hook_embed"))).abs().max().item<double>(), 1e-4) << family;
  }
}

TEST(DenseFamilyAnalyses, QkLookupEqualsLayerZeroScores) {
  // A one-token input sits at position 0, where rotary is the identity: layer 0's score of the token with
  // itself is the QK look-up of (t, t) (OLMo-2: no ln1, q/k normed over the whole projection; Gemma 2: √d
  // embeddings, (1 + w) norms, query_pre_attn_scalar and the soft-cap).
  for (const char* family : {"olmo2", "gemma2", "gemma3", "phi3"}) {
    auto m = HookedTransformer::load(familyDir(family));
    OvQkParams p;
    p.tokens = {5, 6};
    p.queryTokens = {5, 9};
    p.keyTokens = {5, 9};
    const OvQkResult r = ovQkCircuits(*m, p);
    for (const int64_t t : {5L, 9L}) {
      ForwardOptions ex;
      ex.path = AttentionPath::Explicit;
      const ActivationCache cache = m->runWithCache(at::full({1, 1}, t, at::kLong), {"blocks.0.attn.hook_attn_scores"}, ex);
      const at::Tensor s = cache.get("blocks.0.attn.hook_attn_scores")[0].select(1, 0).select(1, 0).to(at::kDouble);  // [head]
      const int64_t i = t == 5 ? 0 : 1;
      const at::Tensor lookup = r.qk[0].select(1, i).select(1, i);  // [head]
      EXPECT_LT((lookup - s).abs().max().item<double>(), 1e-4) << family << " token " << t;
    }
  }
}

}  // namespace dense_family_analyses_test
}  // namespace mechscope::analysis
