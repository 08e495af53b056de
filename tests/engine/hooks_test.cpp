// Hooks: writes take effect downstream and agree with hand computations from cached activations.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>

#include "core/model/hooked_transformer.hpp"
#include "core/safetensors/safetensors_file.hpp"
#include "engine_test_support.hpp"

using namespace mechscope;

namespace {

double maxAbs(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(at::kCPU, at::kDouble) - b.to(at::kCPU, at::kDouble)).abs().max().item<double>();
}

at::Tensor refIds(const std::filesystem::path& dir) {
  return SafetensorsFile::open(dir / "reference.safetensors").tensor("input_ids");  // [2, 24]
}

TEST(HookSet, GlobMatching) {
  EXPECT_TRUE(HookSet::matches("blocks.*.attn.hook_pattern", "blocks.11.attn.hook_pattern"));
  EXPECT_FALSE(HookSet::matches("blocks.*.attn.hook_pattern", "blocks.1.attn.hook_z"));
  EXPECT_TRUE(HookSet::matches("*", "hook_embed"));
  EXPECT_TRUE(HookSet::matches("blocks.?.hook_resid_pre", "blocks.3.hook_resid_pre"));
  EXPECT_FALSE(HookSet::matches("blocks.?.hook_resid_pre", "blocks.13.hook_resid_pre"));
  EXPECT_TRUE(HookSet::matches("hook_embed", "hook_embed"));
  EXPECT_FALSE(HookSet::matches("hook_embed", "hook_embed_x"));
  EXPECT_TRUE(HookSet::matches("*hook_*_out", "blocks.2.hook_mlp_out"));
}

TEST(Hooks, HookNamesFollowTransformerLens) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "llama");
  auto m = HookedTransformer::load(dir);
  const auto names = m->hookNames();
  auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  EXPECT_TRUE(has("hook_embed"));
  EXPECT_FALSE(has("hook_pos_embed"));  // rotary
  EXPECT_TRUE(has("blocks.2.attn.hook_rot_k"));
  EXPECT_TRUE(has("blocks.0.mlp.hook_pre_linear"));
  EXPECT_TRUE(has("blocks.1.hook_resid_mid"));
  EXPECT_TRUE(has("ln_final.hook_normalized"));
  // Every listed name fires exactly once in a forward pass.
  at::Tensor ids = refIds(dir);
  std::map<std::string, int> seen;
  HookSet hs;
  hs.add("*", [&](const at::Tensor&, const HookContext& c) -> std::optional<at::Tensor> {
    ++seen[c.name];
    return std::nullopt;
  });
  (void)m->forward(ids, {}, &hs);
  EXPECT_EQ(seen.size(), names.size());
  for (const auto& n : names) EXPECT_EQ(seen[n], 1) << n;
}

TEST(Hooks, ShapesUnderGqa) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "llama");  // 4 query heads, 2 kv heads, d_head 16
  auto m = HookedTransformer::load(dir);
  const auto cache = m->runWithCache(refIds(dir), {"blocks.0.attn.*"});
  EXPECT_EQ(cache.at("q", 0).sizes(), (at::IntArrayRef{2, 24, 4, 16}));
  EXPECT_EQ(cache.at("k", 0).sizes(), (at::IntArrayRef{2, 24, 2, 16}));
  EXPECT_EQ(cache.at("v", 0).sizes(), (at::IntArrayRef{2, 24, 2, 16}));
  EXPECT_EQ(cache.at("rot_k", 0).sizes(), (at::IntArrayRef{2, 24, 2, 16}));
  EXPECT_EQ(cache.at("pattern", 0).sizes(), (at::IntArrayRef{2, 4, 24, 24}));
  EXPECT_EQ(cache.at("attn_scores", 0).sizes(), (at::IntArrayRef{2, 4, 24, 24}));
  EXPECT_EQ(cache.at("z", 0).sizes(), (at::IntArrayRef{2, 24, 4, 16}));
  EXPECT_EQ(cache.at("result", 0).sizes(), (at::IntArrayRef{2, 24, 4, 64}));
  // Patterns are causal and row-stochastic.
  const at::Tensor p = cache.at("pattern", 0);
  EXPECT_LT((p.sum(-1) - 1).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(p.triu(1).abs().max().item<double>(), 0.0);
}

TEST(Hooks, ResultSumsToAttnOut) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "gpt2");
  auto m = HookedTransformer::load(dir);
  const auto cache = m->runWithCache(refIds(dir), {"blocks.1.attn.hook_result", "blocks.1.hook_attn_out"});
  const at::Tensor sum = cache.at("result", 1).sum(2) + m->weights().layers[1].bO;
  EXPECT_LT(maxAbs(sum, cache.at("attn_out", 1)), 1e-4);
}

// Zeroing one head's hook_z in the last block of Pythia (parallel residual, so the block output is
// resid_pre + attn_out + mlp_out with mlp_out independent of attention): the new logits equal
// unembed(ln_final(resid_post - z_h W_O,h)) computed by hand from cached activations and the
// checkpoint's own tensors.
TEST(Hooks, ZeroOneHeadZMatchesHandComputation) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "pythia");
  auto m = HookedTransformer::load(dir);
  const auto& c = m->config();
  const int l = c.nLayers - 1, h = 1;
  const std::string zName = fmt::format("blocks.{}.attn.hook_z", l);
  const at::Tensor ids = refIds(dir);
  ForwardResult clean, ablated;
  const auto c1 = m->runWithCache(ids, {zName, fmt::format("blocks.{}.hook_resid_post", l)}, {}, {}, &clean);
  HookSet zero;
  zero.add(zName, [h](const at::Tensor& z, const HookContext&) -> std::optional<at::Tensor> {
    at::Tensor out = z.clone();  // [batch, pos, head, d_head]
    out.select(2, h).zero_();
    return out;
  });
  const auto c2 = m->runWithCache(ids, {zName}, {}, {}, &ablated, &zero);
  // Only head h changed.
  for (int k = 0; k < c.nHeads; ++k) {
    const double d = maxAbs(c2.get(zName).select(2, k), c1.get(zName).select(2, k));
    if (k == h) EXPECT_GT(d, 1e-2);
    else EXPECT_EQ(d, 0.0) << "head " << k;
  }
  // Hand computation with the checkpoint's tensors.
  const auto st = SafetensorsFile::open(dir / "model.safetensors");
  const at::Tensor wO = st.tensor(fmt::format("gpt_neox.layers.{}.attention.dense.weight", l));  // [d_model, H * d_head]
  const at::Tensor wOh = wO.narrow(1, h * c.dHead, c.dHead);                                     // [d_model, d_head]
  const at::Tensor delta = at::matmul(c1.get(zName).select(2, h), wOh.t());                       // [batch, pos, d_model]
  const at::Tensor resid = c1.at("resid_post", l) - delta;
  const at::Tensor x = at::layer_norm(resid, {c.dModel}, st.tensor("gpt_neox.final_layer_norm.weight"),
                                      st.tensor("gpt_neox.final_layer_norm.bias"), c.normEps);
  const at::Tensor logits = at::matmul(x, st.tensor("embed_out.weight").t());  // [batch, pos, vocab]
  EXPECT_GT(maxAbs(ablated.logits, clean.logits), 1e-2);
  const double err = maxAbs(ablated.logits, logits);
  std::printf("[hooks] zero z head %d.%d: logits moved %.3g, hand computation error %.3g\n", l, h,
              maxAbs(ablated.logits, clean.logits), err);
  EXPECT_LT(err, 1e-4);
}

// Overwriting hook_pattern with uniform causal attention (GQA model): z becomes the running mean of
// v of the head's kv group, and the logits change.
TEST(Hooks, UniformPatternChangesOutput) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "llama");
  auto m = HookedTransformer::load(dir);
  const auto& c = m->config();
  const at::Tensor ids = refIds(dir);
  HookSet uniform;
  uniform.add("blocks.0.attn.hook_pattern", [](const at::Tensor& p, const HookContext&) -> std::optional<at::Tensor> {
    const int64_t n = p.size(-1);
    at::Tensor u = at::ones({n, n}, p.options()).tril();  // [query, key]
    u = u / u.sum(-1, true);
    return u.expand_as(p).clone();
  });
  ForwardResult clean, hooked;
  (void)m->runWithCache(ids, {}, {}, {}, &clean);
  const auto cache = m->runWithCache(ids, {"blocks.0.attn.hook_v", "blocks.0.attn.hook_z", "blocks.0.attn.hook_pattern"}, {}, {},
                                     &hooked, &uniform);
  // Layer 0 is hooked, so explicit there; LibTorch 2.x fuses the unhooked layers ("mixed").
  EXPECT_NE(hooked.attentionPath, "fused");
  const at::Tensor v = cache.at("v", 0);  // [batch, pos, kv_head, d_head]
  const at::Tensor counts = at::arange(1, v.size(1) + 1, v.options()).view({1, -1, 1, 1});
  const at::Tensor runningMean = v.cumsum(1) / counts;                                   // [batch, pos, kv_head, d_head]
  const at::Tensor expected = runningMean.repeat_interleave(c.nHeads / c.nKvHeads, 2);  // [batch, pos, head, d_head]
  EXPECT_LT(maxAbs(cache.at("z", 0), expected), 1e-5);
  EXPECT_GT(maxAbs(hooked.logits, clean.logits), 1e-2);
}

TEST(Hooks, ForwardFromAndStopAtLayer) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "qwen3");
  auto m = HookedTransformer::load(dir);
  const at::Tensor ids = refIds(dir);
  ForwardResult full;
  const auto cache = m->runWithCache(ids, {"blocks.1.hook_resid_pre"}, {}, {}, &full);
  ForwardOptions stop;
  stop.stopAtLayer = 1;
  const ForwardResult part = m->forward(ids, stop);
  EXPECT_FALSE(part.logits.defined());
  EXPECT_EQ(maxAbs(part.residual, cache.at("resid_pre", 1)), 0.0);
  const ForwardResult rest = m->forwardFrom(1, part.residual);
  EXPECT_LT(maxAbs(rest.logits, full.logits), 1e-5);
}

// Left and right padding give the same logits at real positions as the unpadded sequence.
TEST(Hooks, PaddingMatchesUnpadded) {
  for (const std::string fam : {"gpt2", "llama"}) {
    MECHSCOPE_FIXTURE_OR_SKIP(dir, fam);
    auto m = HookedTransformer::load(dir);
    const at::Tensor row = refIds(dir)[0].narrow(0, 0, 10);  // [10]
    const at::Tensor alone = m->forward(row.unsqueeze(0)).logits[0];  // [10, vocab]
    const at::Tensor pad = at::zeros({4}, row.options());
    const at::Tensor ones = at::ones({10}, row.options()), zeros = at::zeros({4}, row.options());
    ForwardOptions left, right;
    left.attentionMask = at::stack({at::cat({zeros, ones}), at::ones({14}, row.options())});
    right.attentionMask = at::stack({at::cat({ones, zeros}), at::ones({14}, row.options())});
    const at::Tensor other = refIds(dir)[1].narrow(0, 0, 14);
    const at::Tensor l = m->forward(at::stack({at::cat({pad, row}), other}), left).logits;   // [2, 14, vocab]
    const at::Tensor r = m->forward(at::stack({at::cat({row, pad}), other}), right).logits;  // [2, 14, vocab]
    EXPECT_LT(maxAbs(l[0].narrow(0, 4, 10), alone), 1e-4) << fam << " left padding";
    EXPECT_LT(maxAbs(r[0].narrow(0, 0, 10), alone), 1e-4) << fam << " right padding";
    EXPECT_FALSE(at::isnan(l).any().item<bool>());
    // The unpadded second row is unaffected by the first row's padding.
    EXPECT_LT(maxAbs(l[1], m->forward(other.unsqueeze(0)).logits[0]), 1e-4);
  }
}

}  // namespace

// Reading hooks must not change what the model computes: a forward that caches every hook (hook_result and
// the experts' hook_expert_out included, which form per-head and per-expert outputs) gives the logits of the
// plain forward on the same attention path, bit for bit, as long as no hook changed anything. Reading patterns
// takes the explicit path at these lengths (LibTorch ≥ 2's fused kernel has no pattern to show, so an Auto pass
// there is fused and rounds differently); TiledShownAttention.* covers the long inputs, where the chunked path's
// tiles are shown. Per family, on the fixture checkpoints (the HF-made fixtures of shared/, and the family fixtures
// kept in tests/data/families).
TEST(Hooks, ReadingEveryHookLeavesTheLogitsBitIdentical) {
  int seen = 0;
  for (const char* fam : {"gpt2", "llama", "qwen3", "pythia", "qwen2", "mistral", "gemma2", "gemma3", "gpt_oss", "mixtral",
                          "olmo2", "phi3", "phi3_longrope", "qwen2_moe", "qwen3_moe"}) {
    const auto dir = test::fixtureModel(fam);
    if (!dir) continue;
    auto m = HookedTransformer::load(*dir);
    const at::Tensor ids = refIds(*dir);
    ForwardResult hooked, hookedNoResult;
    (void)m->runWithCache(ids, {"*"}, {}, {}, &hooked);
    (void)m->runWithCache(ids, {"*attn.hook_pattern", "*hook_resid_post"}, {}, {}, &hookedNoResult);
    ForwardOptions explicitPath;
    explicitPath.path = AttentionPath::Explicit;
    const at::Tensor plain = m->forward(ids, explicitPath).logits;
    EXPECT_TRUE(at::equal(hookedNoResult.logits, plain)) << fam << ": reading patterns changed the logits by "
                                                         << (hookedNoResult.logits - plain).abs().max().item<double>();
    EXPECT_TRUE(at::equal(hooked.logits, plain)) << fam << ": reading every hook changed the logits by "
                                                 << (hooked.logits - plain).abs().max().item<double>();
    ++seen;
  }
  std::printf("[hooks] every-hook logits bit-identical to the plain forward in %d families\n", seen);
  EXPECT_GE(seen, 9) << "the family fixtures of tests/data/families are always there";
}

// hook_result is each head's z through its own d_head columns of W_O, laid out contiguously [batch, pos, head,
// d_model] (written per head into one tensor, not a permuted view): against the product in fp64 from the
// cached z and the checkpoint's W_O, within fp32 rounding of a 16-term (d_head) dot product.
TEST(Hooks, ResultIsEachHeadsZThroughItsSliceOfWO) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "llama");
  auto m = HookedTransformer::load(dir);
  const auto& c = m->config();
  const at::Tensor ids = refIds(dir);
  const auto cache = m->runWithCache(ids, {"blocks.1.attn.hook_z", "blocks.1.attn.hook_result"});
  const at::Tensor z = cache.at("z", 1).to(at::kDouble);  // [batch, pos, head, d_head]
  const at::Tensor result = cache.at("result", 1);       // [batch, pos, head, d_model]
  EXPECT_TRUE(result.is_contiguous());
  const at::Tensor wO = m->weights().layers[1].wO.to(at::kDouble).view({c.dModel, c.nHeads, c.dHead});
  const at::Tensor ref = at::einsum("bphe,dhe->bphd", {z, wO});
  const double scale = (z.abs().unsqueeze(-2) * wO.abs().permute({1, 0, 2}).unsqueeze(0).unsqueeze(0)).sum(-1).max().item<double>();
  EXPECT_LE((result.to(at::kDouble) - ref).abs().max().item<double>(), 4.0 * c.dHead * 0x1p-24 * scale);
}
