// Issue #23's dense families beyond logit parity (parity_test.cpp): LongRope's per-pass factors and its
// refusal of stale caches, Gemma's soft-caps (paths, hook_attn_scores), post-norm and pre-norm-less hook
// points, per-layer windows with left padding, config parsing of the HF variants, and the attention probe
// with soft-capping and per-layer windows against the materialised pattern.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/probe/attention_probe.hpp"
#include "core/safetensors/safetensors_file.hpp"
#include "engine_test_support.hpp"

using namespace mechscope;

namespace dense_families_test {

at::Tensor referenceIds(const std::filesystem::path& dir) {
  return SafetensorsFile::open(dir / "reference.safetensors").tensor("input_ids");  // [2, 24]
}

bool hasHook(const HookedTransformer& m, const std::string& name) {
  const auto names = m.hookNames();
  return std::find(names.begin(), names.end(), name) != names.end();
}

nlohmann::json readConfig(const std::filesystem::path& dir) {
  std::ifstream in(dir / "config.json");
  return nlohmann::json::parse(in);
}

}  // namespace dense_families_test

using namespace dense_families_test;

TEST(LongRope, FactorsArePickedPerPass) {
  // 24 > original_max_position_embeddings 16: the reference run uses the long factors. A 16-token prefix
  // alone stays within 16 positions and uses the short ones, so its logits differ from the same positions
  // of the 24-token run; without LongRope (plain phi3) a causal prefix gives the same logits.
  const auto dir = test::fixtureModel("phi3_longrope");
  ASSERT_TRUE(dir);
  auto m = HookedTransformer::load(*dir);
  EXPECT_EQ(m->config().ropeScaling.kind, RopeScalingKind::LongRope);
  EXPECT_EQ(m->config().ropeScaling.originalMaxPositionEmbeddings, 16);
  EXPECT_NEAR(m->config().ropeScaling.attentionFactor, std::sqrt(1.0 + std::log(128.0 / 16.0) / std::log(16.0)), 1e-12);
  const at::Tensor ids = referenceIds(*dir);
  const at::Tensor full = m->forward(ids).logits;                  // [2, 24, vocab]
  const at::Tensor prefix = m->forward(ids.narrow(1, 0, 16)).logits;  // [2, 16, vocab]
  EXPECT_GT(test::maxAbsDiff(prefix, full.narrow(1, 0, 16)), 1e-2);
  // 17 positions switch to the long factors: the first 17 positions of the full run, up to rounding.
  EXPECT_LT(test::maxAbsDiff(m->forward(ids.narrow(1, 0, 17)).logits, full.narrow(1, 0, 17)), 1e-4);

  const auto plainDir = test::fixtureModel("phi3");
  ASSERT_TRUE(plainDir);
  auto plain = HookedTransformer::load(*plainDir);
  const at::Tensor pIds = referenceIds(*plainDir);
  EXPECT_LT(test::maxAbsDiff(plain->forward(pIds.narrow(1, 0, 16)).logits, plain->forward(pIds).logits.narrow(1, 0, 16)), 1e-4);
}

TEST(LongRope, StaleCacheIsRefusedAndWithinOneTableCachingIsExact) {
  const auto dir = test::fixtureModel("phi3_longrope");
  ASSERT_TRUE(dir);
  auto m = HookedTransformer::load(*dir);
  const at::Tensor ids = referenceIds(*dir);
  KVCache cache;
  (void)m->forwardCached(ids.narrow(1, 0, 10), cache, -1);
  EXPECT_FALSE(cache.longRope);
  (void)m->forwardCached(ids.narrow(1, 10, 6), cache, 0);  // 16 positions: still short
  EXPECT_THROW(m->forwardCached(ids.narrow(1, 16, 1), cache, 1), UnsupportedError);
  // A cache started past the switch is long throughout and matches the full forward.
  KVCache longCache;
  const at::Tensor full = m->forward(ids).logits;
  (void)m->forwardCached(ids.narrow(1, 0, 20), longCache, -1);
  EXPECT_TRUE(longCache.longRope);
  for (int p = 20; p < 24; ++p) {
    const at::Tensor step = m->forwardCached(ids.narrow(1, p, 1), longCache, p - 20).logits;  // [2, 1, vocab]
    EXPECT_LT(test::maxAbsDiff(step, full.narrow(1, p, 1)), 1e-4) << "position " << p;
  }
}

TEST(Gemma2, SoftcapScoresPathsAndWindows) {
  const auto dir = test::fixtureModel("gemma2");
  ASSERT_TRUE(dir);
  auto m = HookedTransformer::load(*dir);
  const ModelConfig& c = m->config();
  EXPECT_EQ(c.attnSoftcap, 4.0);
  EXPECT_EQ(c.finalSoftcap, 3.0);
  EXPECT_EQ(c.layerWindows, (std::vector<int>{8, 0, 8}));
  EXPECT_NEAR(c.attentionScale(), 1.0 / std::sqrt(24.0), 1e-15);
  const auto ref = SafetensorsFile::open(*dir / "reference.safetensors");
  const at::Tensor ids = ref.tensor("input_ids");
  const at::Tensor logitsRef = ref.tensor("logits");
  // Final soft-cap: |logits| < 3.
  EXPECT_LT(logitsRef.abs().max().item<double>(), 3.0);
  // hook_attn_scores is soft-capped (|s| ≤ 4 where visible) and masked (−inf) beyond each layer's window.
  ForwardOptions ex;
  ex.path = AttentionPath::Explicit;
  const auto cache = m->runWithCache(ids, {"blocks.*.attn.hook_attn_scores"}, ex);
  const at::Tensor i = at::arange(24).unsqueeze(1), j = at::arange(24).unsqueeze(0);
  for (int l = 0; l < c.nLayers; ++l) {
    const at::Tensor s = cache.at("attn_scores", l);  // [batch, head, query, key]
    const at::Tensor finite = s.isfinite();
    EXPECT_LE(s.masked_select(finite).abs().max().item<double>(), 4.0);
    at::Tensor hidden = j > i;
    if (c.windowOf(l) > 0) hidden = hidden.logical_or(i - j >= c.windowOf(l));
    EXPECT_TRUE(at::equal(finite.logical_not(), hidden.expand_as(finite))) << "layer " << l;
  }
  // The fused kernel cannot soft-cap: asking for it falls back to the explicit path; chunked soft-caps too.
  for (const AttentionPath path : {AttentionPath::Fused, AttentionPath::Chunked, AttentionPath::Auto}) {
    ForwardOptions o;
    o.path = path;
    const ForwardResult r = m->forward(ids, o);
    EXPECT_NE(r.attentionPath, "fused");
    EXPECT_LT(test::maxAbsDiff(r.logits, logitsRef), 1e-4) << r.attentionPath;
    if (path == AttentionPath::Chunked) {
      EXPECT_EQ(r.attentionPath, "chunked");
    }
  }
}

TEST(Gemma2, LeftPaddingMatchesUnpadded) {
  const auto dir = test::fixtureModel("gemma2");
  ASSERT_TRUE(dir);
  auto m = HookedTransformer::load(*dir);
  const at::Tensor ids = referenceIds(*dir)[0].unsqueeze(0);  // [1, 24]
  const at::Tensor plain = m->forward(ids).logits;             // [1, 24, vocab]
  const at::Tensor padded = at::cat({at::zeros({1, 5}, at::kLong), ids}, 1);  // [1, 29]
  ForwardOptions o;
  o.attentionMask = at::cat({at::zeros({1, 5}, at::kLong), at::ones({1, 24}, at::kLong)}, 1);
  EXPECT_LT(test::maxAbsDiff(m->forward(padded, o).logits.narrow(1, 5, 24), plain), 1e-4);
}

TEST(DenseFamilies, PostNormHooksAndPreNormAbsence) {
  // Gemma 2: pre- and post-norms; hook_attn_out / hook_mlp_out are what joins the residual (after
  // ln1_post / ln2_post, as TransformerLens).
  const auto gdir = test::fixtureModel("gemma2");
  ASSERT_TRUE(gdir);
  auto g = HookedTransformer::load(*gdir);
  for (const char* h : {"blocks.0.ln1.hook_normalized", "blocks.0.ln1_post.hook_normalized", "blocks.0.ln2.hook_normalized",
                        "blocks.0.ln2_post.hook_normalized", "blocks.0.attn.hook_rot_q", "blocks.0.mlp.hook_pre_linear"})
    EXPECT_TRUE(hasHook(*g, h)) << h;
  const at::Tensor ids = referenceIds(*gdir);
  const auto c = g->runWithCache(ids, {"*"});
  for (int l = 0; l < 3; ++l) {
    EXPECT_TRUE(at::equal(c.at("ln1_post", l), c.at("attn_out", l)));
    EXPECT_TRUE(at::equal(c.at("ln2_post", l), c.at("mlp_out", l)));
    EXPECT_LT(test::maxAbsDiff(c.at("resid_pre", l) + c.at("attn_out", l), c.at("resid_mid", l)), 1e-6);
    EXPECT_LT(test::maxAbsDiff(c.at("resid_mid", l) + c.at("mlp_out", l), c.at("resid_post", l)), 1e-6);
  }
  // hook_embed carries the √d_model scale (what enters the residual).
  EXPECT_LT(test::maxAbsDiff(c.get("hook_embed"), at::embedding(g->weights().wE, ids) * 8.0), 1e-6);

  // OLMo-2: no pre-norms, so no ln1/ln2 hooks; post-norms as Gemma's.
  const auto odir = test::fixtureModel("olmo2");
  ASSERT_TRUE(odir);
  auto o = HookedTransformer::load(*odir);
  EXPECT_FALSE(hasHook(*o, "blocks.0.ln1.hook_normalized"));
  EXPECT_FALSE(hasHook(*o, "blocks.0.ln2.hook_normalized"));
  EXPECT_TRUE(hasHook(*o, "blocks.0.ln1_post.hook_normalized"));
  EXPECT_TRUE(hasHook(*o, "blocks.0.ln2_post.hook_normalized"));
  EXPECT_EQ(o->weights().layers[0].qNormW.size(0), 64);  // whole projection: 4 heads × 16
  EXPECT_EQ(o->weights().layers[0].kNormW.size(0), 32);
  // Phi-3 keeps the Llama hook set; its fused splits are views of the mapped file on CPU.
  const auto pdir = test::fixtureModel("phi3");
  ASSERT_TRUE(pdir);
  auto p = HookedTransformer::load(*pdir);
  const auto& L = p->weights().layers[0];
  EXPECT_EQ(L.wK.data_ptr<float>(), L.wQ.data_ptr<float>() + 64 * 64);
  EXPECT_EQ(L.wIn.data_ptr<float>(), L.wGate.data_ptr<float>() + 96 * 64);
  EXPECT_EQ(p->config().rotaryDim, 8);
}

TEST(DenseFamilies, ConfigVariants) {
  // Gemma 2: absent soft-caps take HF's defaults (50, 30), null ones are off; layer_types absent → the
  // alternating default; an unknown layer type is refused.
  const auto gdir = test::fixtureModel("gemma2");
  ASSERT_TRUE(gdir);
  nlohmann::json g = readConfig(*gdir);
  g.erase("attn_logit_softcapping");
  g["final_logit_softcapping"] = nullptr;
  g.erase("layer_types");
  ModelConfig c = ModelConfig::fromJson(g, "gemma2 config");
  EXPECT_EQ(c.attnSoftcap, 50.0);
  EXPECT_EQ(c.finalSoftcap, 0.0);
  EXPECT_EQ(c.layerWindows, (std::vector<int>{8, 0, 8}));
  EXPECT_NE(c.summary().find("attn_softcap: 50"), std::string::npos);
  g["layer_types"] = {"sliding_attention", "chunked_attention", "full_attention"};
  EXPECT_THROW(ModelConfig::fromJson(g, "gemma2 config"), UnsupportedError);
  g.erase("layer_types");
  g["use_bidirectional_attention"] = true;
  EXPECT_THROW(ModelConfig::fromJson(g, "gemma2 config"), UnsupportedError);
  g.erase("use_bidirectional_attention");
  // sliding_window absent: HF's default 4096 (Gemma2Config / Gemma3TextConfig); null: no window.
  g.erase("sliding_window");
  EXPECT_EQ(ModelConfig::fromJson(g, "gemma2 config").layerWindows, (std::vector<int>{4096, 0, 4096}));
  g["sliding_window"] = nullptr;
  EXPECT_EQ(ModelConfig::fromJson(g, "gemma2 config").layerWindows, (std::vector<int>{0, 0, 0}));

  // Gemma 3: rope per layer type; the multimodal "gemma3" layout reads text_config.
  const auto dir3 = test::fixtureModel("gemma3");
  ASSERT_TRUE(dir3);
  const nlohmann::json t = readConfig(*dir3);
  const ModelConfig c3 = ModelConfig::fromJson(t, "gemma3 config");
  EXPECT_EQ(c3.ropeTheta, 1e6);
  ASSERT_TRUE(c3.slidingRope);
  EXPECT_EQ(c3.slidingRope->theta, 1e4);
  EXPECT_EQ(c3.layerWindows, (std::vector<int>{8, 8, 8, 0}));
  EXPECT_EQ(c3.attnSoftcap, 0.0);
  nlohmann::json mm = {{"model_type", "gemma3"}, {"text_config", t}, {"eos_token_id", 1}};
  const ModelConfig cm = ModelConfig::fromJson(mm, "gemma3 multimodal config");
  EXPECT_EQ(cm.nLayers, 4);
  EXPECT_EQ(cm.layerWindows, c3.layerWindows);
  EXPECT_EQ(cm.slidingRope->theta, 1e4);
  EXPECT_THROW(ModelConfig::fromJson(nlohmann::json{{"model_type", "gemma3"}}, "x"), UnsupportedError);
  // transformers 4 layout: rope_theta + rope_local_base_freq, sliding_window_pattern.
  nlohmann::json v4 = t;
  v4.erase("rope_parameters");
  v4.erase("layer_types");
  v4["rope_theta"] = 1e6;
  v4["rope_local_base_freq"] = 1e4;
  v4["sliding_window_pattern"] = 2;
  const ModelConfig c4 = ModelConfig::fromJson(v4, "gemma3 v4 config");
  EXPECT_EQ(c4.layerWindows, (std::vector<int>{8, 0, 8, 0}));
  EXPECT_EQ(c4.slidingRope->theta, 1e4);

  // LongRope: factor lists must have rotary_dim / 2 entries; legacy rope_scaling + top-level original works.
  const auto ldir = test::fixtureModel("phi3_longrope");
  ASSERT_TRUE(ldir);
  nlohmann::json l = readConfig(*ldir);
  l["rope_parameters"]["long_factor"] = {1.0, 2.0};
  EXPECT_THROW(ModelConfig::fromJson(l, "phi3 config"), InputError);
  nlohmann::json legacy = readConfig(*ldir);
  legacy["rope_scaling"] = {{"type", "longrope"},
                            {"short_factor", legacy["rope_parameters"]["short_factor"]},
                            {"long_factor", legacy["rope_parameters"]["long_factor"]}};
  legacy.erase("rope_parameters");
  const ModelConfig cl = ModelConfig::fromJson(legacy, "phi3 legacy config");
  EXPECT_EQ(cl.ropeScaling.kind, RopeScalingKind::LongRope);
  EXPECT_EQ(cl.ropeScaling.originalMaxPositionEmbeddings, 16);
  EXPECT_NE(cl.summary().find("longrope"), std::string::npos);
}

TEST(DenseFamilies, ProbeHonoursSoftcapAndLayerWindows) {
  // Gemma 2 (soft-cap 4, windows 8/0/8) and Gemma 3 (windows, local/global rope): the tiled probe on
  // hook_rot_q/k with the layer's window and soft-cap gives the statistics of the materialised pattern.
  for (const char* family : {"gemma2", "gemma3"}) {
    const auto dir = test::fixtureModel(family);
    ASSERT_TRUE(dir);
    auto m = HookedTransformer::load(*dir);
    const ModelConfig& c = m->config();
    const at::Tensor ids = referenceIds(*dir)[1].unsqueeze(0);  // [1, 24]
    ForwardOptions ex;
    ex.path = AttentionPath::Explicit;
    const auto cache = m->runWithCache(ids, {"blocks.*.attn.hook_rot_q", "blocks.*.attn.hook_rot_k", "blocks.*.attn.hook_pattern"}, ex);
    ProbeRequest req;
    req.columnSums = true;
    req.topK = 2;
    req.distance = true;
    req.entropy = true;
    req.columnKeys = {0, 3};
    for (int l = 0; l < c.nLayers; ++l) {
      ProbeInputs in;
      in.q = cache.at("rot_q", l)[0];  // [pos, head, d_head]
      in.k = cache.at("rot_k", l)[0];  // [pos, kv_head, d_head]
      in.scale = c.attentionScale();
      in.slidingWindow = c.windowOf(l);
      in.softcap = c.attnSoftcap;
      const ProbeResult ref = statsFromPattern(cache.at("pattern", l)[0], req);
      for (const ProbeAlgorithm alg : {ProbeAlgorithm::Scan, ProbeAlgorithm::LseFirst}) {
        ProbeRequest r2 = req;
        r2.algorithm = alg;
        if (alg == ProbeAlgorithm::LseFirst) r2.entropy = false;
        const ProbeResult got = probeAttention(in, r2, 7, 5);  // small tiles: many masked/skipped tiles
        EXPECT_LT(test::maxAbsDiff(got.columnSums, ref.columnSums), 1e-4) << family << " layer " << l;
        EXPECT_LT(test::maxAbsDiff(got.columnKeySums, ref.columnKeySums), 1e-4) << family << " layer " << l;
        EXPECT_LT(test::maxAbsDiff(got.distance, ref.distance), 1e-3) << family << " layer " << l;
        EXPECT_LT(test::maxAbsDiff(got.topValues, ref.topValues), 1e-4) << family << " layer " << l;
        if (alg == ProbeAlgorithm::Scan) {
          EXPECT_LT(test::maxAbsDiff(got.entropy, ref.entropy), 1e-4) << family << " layer " << l;
        }
      }
      if (c.attnSoftcap > 0) {  // without the soft-cap the statistics differ: the test can fail
        ProbeInputs raw = in;
        raw.softcap = 0;
        EXPECT_GT(test::maxAbsDiff(probeAttention(raw, req).columnSums, ref.columnSums), 1e-3) << family << " layer " << l;
      }
    }
  }
}
