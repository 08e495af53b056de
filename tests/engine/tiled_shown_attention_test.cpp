// Hooked attention over query tiles (issue #24): where a layer's scores exceed one chunk tile, a pass whose
// hook_attn_scores / hook_pattern are hooked computes them in the chunked path's tiles (the masked key blocks are
// never multiplied) and lays them into whole tensors for the hooks. Checked here, on tiny random models of four
// families at 1,100 tokens (2–3 tiles): the hooks see what the explicit, full-square path gives (the path the
// parity tests hold to Hugging Face's attentions), the queries' own fp64 softmax for a plain causal model, −inf /
// exactly 0 above the diagonal; reading them leaves the chunked pass's logits bit-identical; and a hook that
// changes the scores or the pattern patches the model as it does on the explicit path.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>

#include "core/model/hooked_transformer.hpp"
#include "core/synth/synth_model.hpp"
#include "engine_test_support.hpp"

using namespace mechscope;

namespace {

constexpr int64_t kTokens = 1100;  // tiny synth: 4 heads, so one tile is 953 rows (476 for a batch of 2): 2–3 tiles, the last short

/// Scales the queries by 6 so that patterns are far from uniform (a wrong mask or key range shows), and keeps
/// each layer's rotated queries and keys in `q` / `k` when given.
HookSet sharpen(std::map<int, at::Tensor>* q = nullptr, std::map<int, at::Tensor>* k = nullptr) {
  HookSet hooks;
  hooks.add("blocks.*.attn.hook_rot_q", [q](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    at::Tensor scaled = t * 6;
    if (q) (*q)[hc.layer] = scaled;
    return scaled;
  });
  hooks.add("blocks.*.attn.hook_q", [](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
    return t * 6;  // GPT-2 has no rotary: its queries are sharpened here (rotary models: once more, harmless)
  });
  if (k)
    hooks.add("blocks.*.attn.hook_rot_k", [k](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
      (*k)[hc.layer] = t;
      return std::nullopt;
    });
  return hooks;
}

struct PassRun {
  at::Tensor logits;                   // [batch, pos, vocab] (undefined when stopped after layer 0)
  std::map<int, at::Tensor> scores;    // per layer [batch, head, query, key]
  std::map<int, at::Tensor> patterns;  // per layer [batch, head, query, key]
  at::Tensor q0, k0;                   // layer 0's queries and keys as the scores use them [batch, pos, (kv_)head, d_head]
};

/// fp32 error bounds of one layer's hooked scores and pattern against any other evaluation of the same formula
/// (Higham's γ_n ≈ n·2⁻²⁴ per sum): a score is scale · a d_head-term dot product, within
/// d_head · 2⁻²⁴ · scale · ‖q‖ · ‖k‖ (Cauchy–Schwarz) of the exact one, and a soft-cap's tanh does not enlarge
/// that; a probability p = e^(s − m) / Σ moves by at most p · 2 · Δs through the scores and by N · 2⁻²⁴ through
/// the normaliser's sum of at most N terms. Two evaluations: twice each.
struct Bounds {
  double scores = 0, pattern = 0;
};
Bounds fp32Bounds(const at::Tensor& q, const at::Tensor& k, int64_t dHead, int64_t keys, int evaluations) {
  const double u = std::ldexp(1.0, -24);
  const double qn = q.to(at::kDouble).norm(2, {-1}).max().item<double>(), kn = k.to(at::kDouble).norm(2, {-1}).max().item<double>();
  Bounds b;
  b.scores = evaluations * dHead * u * qn * kn / std::sqrt(static_cast<double>(dHead));
  b.pattern = 2 * b.scores + evaluations * keys * u;
  return b;
}

/// One forward on `path` with the sharpening hooks, scores and patterns read (kept) when `read`, and `extra` after.
PassRun runOn(const HookedTransformer& m, const at::Tensor& ids, const at::Tensor& mask, AttentionPath path, bool read,
              const std::function<void(HookSet&)>& extra = {}, int stopAtLayer = -1) {
  PassRun r;
  HookSet hooks = sharpen();
  const bool rotary = m.config().rotaryDim > 0;
  hooks.add(rotary ? "blocks.0.attn.hook_rot_q" : "blocks.0.attn.hook_q",
            [&r](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
              r.q0 = t;  // after the sharpening hooks, which were added first
              return std::nullopt;
            });
  hooks.add(rotary ? "blocks.0.attn.hook_rot_k" : "blocks.0.attn.hook_k",
            [&r](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
              r.k0 = t;
              return std::nullopt;
            });
  if (read) {
    hooks.add("blocks.*.attn.hook_attn_scores", [&r](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
      r.scores[hc.layer] = t;
      return std::nullopt;
    });
    hooks.add("blocks.*.attn.hook_pattern", [&r](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
      r.patterns[hc.layer] = t;
      return std::nullopt;
    });
  }
  if (extra) extra(hooks);
  ForwardOptions fo;
  fo.path = path;
  fo.attentionMask = mask;
  fo.stopAtLayer = stopAtLayer;
  r.logits = m.forward(ids, fo, &hooks).logits;
  return r;
}

/// Finite entries agree within `tol`; the −inf entries are the same ones.
void expectScoresAgree(const at::Tensor& tiled, const at::Tensor& full, double tol, const std::string& what) {
  ASSERT_EQ(tiled.sizes(), full.sizes()) << what;
  EXPECT_TRUE(at::equal(at::isinf(tiled), at::isinf(full))) << what << ": the masked entries differ";
  const at::Tensor finite = at::isfinite(full);
  EXPECT_LE(test::maxAbsDiff(tiled.masked_select(finite), full.masked_select(finite)), tol) << what;
}

}  // namespace

// Per family: plain causal (gpt2, qwen3 with grouped queries), soft-capped scores (gemma2) and learned sinks with a
// 128-key sliding window (gpt_oss), unpadded and left-padded batches. Layer 0 is compared with the explicit path
// (same inputs there; later layers see the two paths' slightly different residuals).
TEST(TiledShownAttention, HooksSeeTheExplicitPathsScoresAndPatternsAndTheLogitsStayTheChunkedOnes) {
  const auto dir = test::tempDir("tiled_shown");
  for (const std::string family : {"gpt2", "qwen3", "gemma2", "gpt_oss"}) {
    SCOPED_TRACE(family);
    synth::writeSynthFolder(dir / family, family, "tiny", 11, "fp32");
    auto m = HookedTransformer::load(dir / family);
    for (const bool padded : {false, true}) {
      SCOPED_TRACE(padded ? "left-padded batch of 2" : "one row");
      const at::Tensor ids = at::randint(0, m->config().dVocab, {padded ? 2 : 1, kTokens}, at::kLong);
      const at::Tensor mask = padded ? test::leftPaddedPair(kTokens, 100) : at::Tensor();
      const PassRun tiled = runOn(*m, ids, mask, AttentionPath::Chunked, true);
      const PassRun chunked = runOn(*m, ids, mask, AttentionPath::Chunked, false);
      EXPECT_TRUE(at::equal(tiled.logits, chunked.logits))
          << "reading scores and patterns changed the chunked pass's logits by " << test::maxAbsDiff(tiled.logits, chunked.logits);
      ASSERT_EQ(tiled.patterns.size(), static_cast<size_t>(m->config().nLayers));
      for (const auto& [layer, pattern] : tiled.patterns) ASSERT_TRUE(pattern.is_contiguous()) << layer;
      const PassRun full = runOn(*m, ids, mask, AttentionPath::Explicit, true, {}, 1);  // layer 0 only
      const Bounds b = fp32Bounds(tiled.q0, tiled.k0, m->config().dHead, kTokens, 2);
      expectScoresAgree(tiled.scores.at(0), full.scores.at(0), b.scores, "scores");
      EXPECT_LE(test::maxAbsDiff(tiled.patterns.at(0), full.patterns.at(0)), b.pattern);
      // Where the scores are masked (−inf: above the diagonal, outside the window, padded keys): exactly 0 in both.
      // Elsewhere a probability at fp32's underflow may be 0 in one path only, as the random inputs fall (the bound
      // above covers it).
      const at::Tensor masked = at::isinf(full.scores.at(0));
      EXPECT_EQ(tiled.patterns.at(0).masked_select(masked).ne(0).sum().item<int64_t>(), 0) << "tiled: masked entries not 0";
      EXPECT_EQ(full.patterns.at(0).masked_select(masked).ne(0).sum().item<int64_t>(), 0) << "explicit: masked entries not 0";
    }
  }
}

// For a plain causal model with grouped queries the pattern is the softmax of the hooked queries and keys, in fp64:
// row i over keys 0..i of q_i · k_j / √d_head, query head h reading kv head h / 2.
TEST(TiledShownAttention, PatternIsTheQueriesOwnCausalSoftmax) {
  const auto dir = test::tempDir("tiled_shown_ref");
  synth::writeSynthFolder(dir, "qwen3", "tiny", 12, "fp32");
  auto m = HookedTransformer::load(dir);
  const auto& c = m->config();
  const at::Tensor ids = at::randint(0, c.dVocab, {1, kTokens}, at::kLong);
  std::map<int, at::Tensor> q, k, patterns;
  HookSet hooks = sharpen(&q, &k);
  hooks.add("blocks.*.attn.hook_pattern", [&patterns](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    patterns[hc.layer] = t;
    return std::nullopt;
  });
  ForwardOptions fo;
  fo.path = AttentionPath::Chunked;
  (void)m->forward(ids, fo, &hooks);
  const at::Tensor causal = at::ones({kTokens, kTokens}, at::kBool).triu(1);  // [query, key] true above the diagonal
  for (const auto& [layer, pattern] : patterns) {
    SCOPED_TRACE(layer);
    const at::Tensor qd = q.at(layer)[0].to(at::kDouble).permute({1, 0, 2});  // [head, pos, d_head]
    const at::Tensor kd = k.at(layer)[0].to(at::kDouble).permute({1, 0, 2});  // [kv_head, pos, d_head]
    const at::Tensor kRep = kd.repeat_interleave(c.nHeads / c.nKvHeads, 0);   // [head, pos, d_head]
    const at::Tensor ref = at::softmax(
        at::matmul(qd, kRep.transpose(1, 2)).div(std::sqrt(static_cast<double>(c.dHead))).masked_fill(causal, -INFINITY), -1);
    EXPECT_LE(test::maxAbsDiff(pattern[0], ref), fp32Bounds(q.at(layer), k.at(layer), c.dHead, kTokens, 1).pattern);
  }
}

// A hook that edits the scores or the pattern patches the model as on the explicit path: the same logits (up to the
// order of fp32 sums), and not the unpatched ones.
TEST(TiledShownAttention, ChangingTheScoresOrThePatternPatchesAsTheExplicitPathDoes) {
  const auto dir = test::tempDir("tiled_shown_patch");
  synth::writeSynthFolder(dir, "qwen3", "tiny", 13, "fp32");
  auto m = HookedTransformer::load(dir);
  const at::Tensor ids = at::randint(0, m->config().dVocab, {1, kTokens}, at::kLong);
  const PassRun plain = runOn(*m, ids, {}, AttentionPath::Chunked, false);
  const std::vector<std::pair<std::string, std::function<void(HookSet&)>>> patches{
      {"pattern of head 1 moved onto the first key",
       [](HookSet& h) {
         h.add("blocks.0.attn.hook_pattern", [](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
           at::Tensor p = t.clone();
           p.select(1, 1).zero_();
           p.select(1, 1).select(2, 0).fill_(1.0);
           return p;
         });
       }},
      {"scores of head 2 raised at key 5, in place",
       [](HookSet& h) {
         h.add("blocks.0.attn.hook_attn_scores", [](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
           t.select(1, 2).select(2, 5).add_(4.0);
           return std::nullopt;
         });
       }},
  };
  for (const auto& [what, patch] : patches) {
    SCOPED_TRACE(what);
    const PassRun tiled = runOn(*m, ids, {}, AttentionPath::Chunked, false, patch);
    const PassRun full = runOn(*m, ids, {}, AttentionPath::Explicit, false, patch);
    EXPECT_LE(test::maxAbsDiff(tiled.logits, full.logits), 1e-4);
    EXPECT_GE(test::maxAbsDiff(tiled.logits, plain.logits), 1e-3) << "the patch did not take effect";
  }
}
