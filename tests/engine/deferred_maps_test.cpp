// Attention maps formed apart from the pass (ForwardOptions::onDeferredMaps, issue #24): a layer whose
// hook_attn_scores and hook_pattern are unhooked keeps its own attention path and hands out a function that forms
// the two maps later, on any thread. Checked here on tiny random models of four families (plain causal GPT-2,
// grouped-query Qwen3, Gemma 2's soft-capped scores, gpt-oss's learned sinks with a 128-key window), long inputs
// (tiled in the hooked pass) and short ones, unpadded and left-padded: the logits stay the unhooked pass's bit for
// bit; layer 0's maps, formed on another thread after the pass, are bit for bit those the hooks see (same inputs,
// same arithmetic); every layer's pattern of a plain causal model is its own queries' and keys' fp64 softmax.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "core/model/hooked_transformer.hpp"
#include "core/synth/synth_model.hpp"
#include "engine_test_support.hpp"

using namespace mechscope;

namespace {

struct Deferred {
  int64_t mapBytes = 0;
  std::function<AttentionMaps()> form;
};

/// A forward that defers every unhooked layer's maps; `hooks` (may be null) as given.
ForwardResult deferredPass(const HookedTransformer& m, const at::Tensor& ids, const at::Tensor& mask, std::map<int, Deferred>& out,
                           const HookSet* hooks = nullptr) {
  ForwardOptions fo;
  fo.attentionMask = mask;
  fo.onDeferredMaps = [&out](int layer, int64_t mapBytes, std::function<AttentionMaps()> form) {
    out[layer] = Deferred{mapBytes, std::move(form)};
  };
  return m.forward(ids, fo, hooks);
}

/// `form` run on a thread of its own, as a cache's maps thread runs it.
AttentionMaps formOnAnotherThread(const std::function<AttentionMaps()>& form) {
  AttentionMaps maps;
  std::thread t([&] { maps = form(); });
  t.join();
  return maps;
}

}  // namespace

TEST(DeferredMaps, LogitsStayTheUnhookedPassAndLayerZeroIsWhatTheHooksSee) {
  const auto dir = test::tempDir("deferred_maps");
  for (const std::string family : {"gpt2", "qwen3", "gemma2", "gpt_oss"}) {
    SCOPED_TRACE(family);
    synth::writeSynthFolder(dir / family, family, "tiny", 21, "fp32");
    auto m = HookedTransformer::load(dir / family);
    const int nLayers = m->config().nLayers;
    // 1,100 tokens: over one chunk tile of the tiny models (953 rows), so a hooked pass tiles its maps; 40: the
    // explicit path's one square.
    for (const auto& [tokens, padded] : std::vector<std::pair<int64_t, bool>>{{1100, false}, {1100, true}, {40, false}, {40, true}}) {
      SCOPED_TRACE(fmt::format("{} tokens{}", tokens, padded ? ", left-padded batch of 2" : ""));
      const at::Tensor ids = at::randint(0, m->config().dVocab, {padded ? 2 : 1, tokens}, at::kLong);
      const at::Tensor mask = padded ? test::leftPaddedPair(tokens, tokens / 10) : at::Tensor();
      ForwardOptions bareOptions;
      bareOptions.attentionMask = mask;
      const ForwardResult bare = m->forward(ids, bareOptions);

      std::map<int, Deferred> deferred;
      const ForwardResult withDeferred = deferredPass(*m, ids, mask, deferred);
      EXPECT_TRUE(at::equal(withDeferred.logits, bare.logits))
          << "deferring the maps changed the logits by " << test::maxAbsDiff(withDeferred.logits, bare.logits);
      EXPECT_EQ(withDeferred.attentionPath, bare.attentionPath);
      ASSERT_EQ(deferred.size(), static_cast<size_t>(nLayers)) << "one deferred pair per layer";

      at::Tensor scores0, pattern0;
      HookSet hooks;
      hooks.add("blocks.0.attn.hook_attn_scores", [&](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
        scores0 = t;
        return std::nullopt;
      });
      hooks.add("blocks.0.attn.hook_pattern", [&](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
        pattern0 = t;
        return std::nullopt;
      });
      ForwardOptions hookedOptions;
      hookedOptions.attentionMask = mask;
      hookedOptions.stopAtLayer = 1;
      (void)m->forward(ids, hookedOptions, &hooks);

      const AttentionMaps formed = formOnAnotherThread(deferred.at(0).form);
      ASSERT_TRUE(formed.scores.defined() && formed.pattern.defined());
      EXPECT_EQ(deferred.at(0).mapBytes, formed.pattern.numel() * 4);
      EXPECT_EQ(formed.scores.sizes(), scores0.sizes());
      EXPECT_TRUE(at::equal(formed.scores, scores0)) << "scores differ by up to "
                                                     << test::maxAbsDiff(formed.scores.nan_to_num(0, 0, 0), scores0.nan_to_num(0, 0, 0));
      EXPECT_TRUE(at::equal(formed.pattern, pattern0)) << "pattern differs by up to " << test::maxAbsDiff(formed.pattern, pattern0);
      for (const auto& [layer, d] : deferred) {  // every layer forms maps of the right shape, finite where unmasked
        const AttentionMaps maps = d.form();
        EXPECT_EQ(maps.pattern.sizes(), formed.pattern.sizes()) << layer;
        EXPECT_FALSE(maps.pattern.isnan().any().item<bool>()) << layer;
      }
    }
  }
}

// Every layer of a plain causal model with grouped queries, 1,100 tokens: the deferred pattern is the fp64 softmax of
// the queries and keys the pass itself used (hook_rot_q / hook_rot_k), within fp32's rounding bound: a score is a
// d_head-term dot product scaled by 1/√d_head (Higham: within d_head · 2⁻²⁴ · ‖q‖‖k‖/√d_head), a probability moves
// by at most 2 Δs plus the normaliser's N · 2⁻²⁴.
TEST(DeferredMaps, EveryLayersPatternIsItsOwnQueriesCausalSoftmax) {
  const auto dir = test::tempDir("deferred_maps_ref");
  synth::writeSynthFolder(dir, "qwen3", "tiny", 22, "fp32");
  auto m = HookedTransformer::load(dir);
  const auto& c = m->config();
  constexpr int64_t kTokens = 1100;
  const at::Tensor ids = at::randint(0, c.dVocab, {1, kTokens}, at::kLong);
  std::map<int, at::Tensor> q, k;
  HookSet hooks;
  hooks.add("blocks.*.attn.hook_rot_q", [&q](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    at::Tensor sharp = t * 6;  // patterns far from uniform, so a wrong key range or mask shows
    q[hc.layer] = sharp;
    return sharp;
  });
  hooks.add("blocks.*.attn.hook_rot_k", [&k](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    k[hc.layer] = t;
    return std::nullopt;
  });
  std::map<int, Deferred> deferred;
  (void)deferredPass(*m, ids, {}, deferred, &hooks);
  ASSERT_EQ(deferred.size(), static_cast<size_t>(c.nLayers));
  const at::Tensor causal = at::ones({kTokens, kTokens}, at::kBool).triu(1);  // [query, key] above the diagonal
  const double u = std::ldexp(1.0, -24);
  for (const auto& [layer, d] : deferred) {
    SCOPED_TRACE(layer);
    const AttentionMaps maps = formOnAnotherThread(d.form);
    const at::Tensor qd = q.at(layer)[0].to(at::kDouble).permute({1, 0, 2});  // [head, pos, d_head]
    const at::Tensor kd = k.at(layer)[0].to(at::kDouble).permute({1, 0, 2});  // [kv_head, pos, d_head]
    const at::Tensor kRep = kd.repeat_interleave(c.nHeads / c.nKvHeads, 0);   // [head, pos, d_head]
    const at::Tensor ref = at::softmax(
        at::matmul(qd, kRep.transpose(1, 2)).div(std::sqrt(static_cast<double>(c.dHead))).masked_fill(causal, -INFINITY), -1);
    const double qn = qd.norm(2, {-1}).max().item<double>(), kn = kd.norm(2, {-1}).max().item<double>();
    const double scoreBound = c.dHead * u * qn * kn / std::sqrt(static_cast<double>(c.dHead));
    EXPECT_LE(test::maxAbsDiff(maps.pattern[0], ref), 2 * scoreBound + kTokens * u);
    EXPECT_EQ(maps.pattern[0].masked_select(causal).ne(0).sum().item<int64_t>(), 0) << "above the diagonal: exactly 0";
    EXPECT_TRUE(maps.scores[0].masked_select(causal).isneginf().all().item<bool>()) << "above the diagonal: −inf";
  }
}

// A layer whose pattern is hooked is not deferred (its hooks see the maps as before); the others are.
TEST(DeferredMaps, HookedLayersAreNotDeferred) {
  const auto dir = test::tempDir("deferred_maps_hooked");
  synth::writeSynthFolder(dir, "gpt2", "tiny", 23, "fp32");
  auto m = HookedTransformer::load(dir);
  const at::Tensor ids = at::randint(0, m->config().dVocab, {1, 64}, at::kLong);
  int seen = 0;
  HookSet hooks;
  hooks.add("blocks.1.attn.hook_pattern", [&seen](const at::Tensor&, const HookContext&) -> std::optional<at::Tensor> {
    ++seen;
    return std::nullopt;
  });
  std::map<int, Deferred> deferred;
  (void)deferredPass(*m, ids, {}, deferred, &hooks);
  EXPECT_EQ(seen, 1);
  EXPECT_EQ(deferred.count(1), 0u);
  EXPECT_EQ(deferred.size(), static_cast<size_t>(m->config().nLayers - 1));
  // An excepted glob leaves the maps unhooked, so they are deferred again.
  hooks.except("blocks.*.attn.hook_pattern");
  std::map<int, Deferred> again;
  (void)deferredPass(*m, ids, {}, again, &hooks);
  EXPECT_EQ(seen, 1) << "an excepted hook does not run";
  EXPECT_EQ(again.size(), static_cast<size_t>(m->config().nLayers));
}
