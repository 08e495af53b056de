// Mixture-of-experts and learned-sink families (Mixtral, Qwen2-MoE, Qwen3-MoE, gpt-oss) beyond the
// parity of parity_test.cpp: router logits equal HF's, the per-expert hook decomposes hook_mlp_out,
// zeroing one expert removes exactly its weighted contribution (computed here by hand from the weights),
// and gpt-oss's sinks keep every attention path equal to HF.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "core/model/hooked_transformer.hpp"
#include "core/safetensors/safetensors_file.hpp"
#include "engine_test_support.hpp"

using namespace mechscope;

namespace {

double maxAbsErr(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e9;
  return (a.to(at::kCPU, at::kDouble) - b.to(at::kCPU, at::kDouble)).abs().max().item<double>();
}

at::Tensor referenceIds(const std::filesystem::path& dir) {
  return SafetensorsFile::open(dir / "reference.safetensors").tensor("input_ids");  // [2, 24]
}

std::vector<int> sparseLayers(const ModelConfig& c) {
  std::vector<int> out;
  for (int l = 0; l < c.nLayers; ++l)
    if (c.isMoeLayer(l)) out.push_back(l);
  return out;
}

/// One expert's output on x [n, d_model], written out from the weights (fp64), independent of the forward
/// pass's code: act(gate)·up, or gpt-oss's clamped SwiGLU on interleaved gate/up rows.
at::Tensor expertByHand(const ModelConfig& c, const ExpertWeights& e, const at::Tensor& x) {
  auto dbl = [](const at::Tensor& t) { return t.defined() ? t.to(at::kDouble) : t; };
  at::Tensor gate, up;
  if (e.wGateUp.defined()) {
    at::Tensor gu = at::matmul(x, dbl(e.wGateUp).t()) + dbl(e.bGateUp);  // [n, 2·d_expert]
    const int64_t m = gu.size(1) / 2;
    at::Tensor pairs = gu.view({gu.size(0), m, 2});  // column 2i is gate i, 2i + 1 is up i
    gate = pairs.select(2, 0);
    up = pairs.select(2, 1);
  } else {
    gate = at::matmul(x, dbl(e.wGate).t());
    up = at::matmul(x, dbl(e.wIn).t());
  }
  at::Tensor h;
  if (c.moe.activation == ExpertActivation::ClampedSwiglu) {
    gate = at::minimum(gate, at::full_like(gate, c.moe.swigluLimit));
    up = at::maximum(at::minimum(up, at::full_like(up, c.moe.swigluLimit)), at::full_like(up, -c.moe.swigluLimit));
    h = (up + 1) * gate / (1 + at::exp(-c.moe.swigluAlpha * gate));
  } else {
    h = gate / (1 + at::exp(-gate)) * up;  // SiLU: every gated MoE fixture uses it
  }
  at::Tensor out = at::matmul(h, dbl(e.wOut).t());
  return e.bOut.defined() ? out + dbl(e.bOut) : out;
}

class Moe : public ::testing::TestWithParam<std::string> {};

TEST_P(Moe, RouterLogitsMatchHuggingFace) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, GetParam());
  MECHSCOPE_TEST_DEVICE_OR_SKIP(device);
  auto m = HookedTransformer::load(dir, LoadOptions{device, "fp32"});
  const auto ref = SafetensorsFile::open(dir / "reference.safetensors");
  const at::Tensor routerRef = ref.tensor("router_logits");  // [L_moe, batch·pos, experts]
  const auto layers = sparseLayers(m->config());
  ASSERT_EQ(routerRef.size(0), static_cast<int64_t>(layers.size()));
  const auto cache = m->runWithCache(ref.tensor("input_ids"), {"blocks.*.mlp.hook_router_logits"}, {}, at::Device(at::kCPU));
  double err = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    const at::Tensor& got = cache.get(fmt::format("blocks.{}.mlp.hook_router_logits", layers[i]));  // [batch, pos, experts]
    EXPECT_EQ(got.size(2), m->config().moe.nExperts);
    err = std::max(err, maxAbsErr(got.reshape({-1, got.size(2)}), routerRef[static_cast<int64_t>(i)]));
  }
  std::printf("[moe] %-9s router logits max|err| %.3g over %zu sparse layers\n", GetParam().c_str(), err, layers.size());
  EXPECT_LE(err, 1e-4);
  EXPECT_GT(routerRef.abs().max().item<double>(), 0.1);  // not a degenerate router
}

TEST_P(Moe, HookNamesFireOnceAndExpertOutDecomposesMlpOut) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, GetParam());
  auto m = HookedTransformer::load(dir);
  const ModelConfig& c = m->config();
  const auto names = m->hookNames();
  const at::Tensor ids = referenceIds(dir);
  std::map<std::string, int> seen;
  HookSet all;
  all.add("*", [&](const at::Tensor&, const HookContext& hc) -> std::optional<at::Tensor> {
    ++seen[hc.name];
    return std::nullopt;
  });
  const at::Tensor logitsAll = m->forward(ids, {}, &all).logits;
  EXPECT_EQ(seen.size(), names.size());
  for (const auto& n : names) EXPECT_EQ(seen[n], 1) << n;
  // Every hook read, hook_expert_out and hook_result included, none changed: the plain path's logits bit for
  // bit (an unchanged per-expert or per-head output leaves the block's sum as the plain path forms it).
  EXPECT_TRUE(at::equal(logitsAll, m->forward(ids).logits)) << maxAbsErr(logitsAll, m->forward(ids).logits);

  const auto cache = m->runWithCache(ids, {"blocks.*.mlp.*", "blocks.*.hook_mlp_out"}, {}, at::Device(at::kCPU));
  for (int l : sparseLayers(c)) {
    const at::Tensor& perExpert = cache.get(fmt::format("blocks.{}.mlp.hook_expert_out", l));   // [batch, pos, expert, d_model]
    const at::Tensor& indices = cache.get(fmt::format("blocks.{}.mlp.hook_expert_indices", l)); // [batch, pos, k]
    const at::Tensor& weights = cache.get(fmt::format("blocks.{}.mlp.hook_expert_weights", l)); // [batch, pos, k]
    ASSERT_EQ(perExpert.sizes(), (std::vector<int64_t>{2, 24, c.moe.nExperts, c.dModel}));
    ASSERT_EQ(indices.sizes(), (std::vector<int64_t>{2, 24, c.moe.topK}));
    at::Tensor sum = perExpert.sum(2);
    if (c.moe.dShared > 0) sum = sum + cache.get(fmt::format("blocks.{}.mlp.hook_shared_expert_out", l));
    EXPECT_LE(maxAbsErr(sum, cache.get(fmt::format("blocks.{}.hook_mlp_out", l))), 1e-5) << "layer " << l;
    // Exactly the k chosen experts contribute at each position.
    at::Tensor used = perExpert.abs().amax(3) > 0;  // [batch, pos, expert]
    EXPECT_TRUE(at::equal(used.sum(2), at::full({2, 24}, c.moe.topK, at::kLong))) << "layer " << l;
    // Routing weights: renormalised (or gpt-oss's softmax over k) rows sum to 1; Qwen2-MoE's do not.
    const bool sumsToOne = c.moe.order == RouterOrder::TopKThenSoftmax || c.moe.normTopK;
    const at::Tensor rowSums = weights.sum(2).to(at::kDouble);
    if (sumsToOne) {
      EXPECT_LE((rowSums - 1).abs().max().item<double>(), 1e-6);
    } else {
      EXPECT_LT(rowSums.max().item<double>(), 1.0);
    }
    // Weights recomputed from the router logits by the family's rule.
    at::Tensor lg = cache.get(fmt::format("blocks.{}.mlp.hook_router_logits", l)).to(at::kDouble);  // [batch, pos, expert]
    at::Tensor expect;
    if (c.moe.order == RouterOrder::TopKThenSoftmax) {
      expect = at::softmax(lg.gather(2, indices), -1);
    } else {
      expect = at::softmax(lg, -1).gather(2, indices);
      if (c.moe.normTopK) expect = expect / expect.sum(2, true);
    }
    EXPECT_LE(maxAbsErr(weights, expect), 1e-6) << "layer " << l;
    // The chosen experts are the k largest logits.
    at::Tensor kth = std::get<0>(at::topk(lg, c.moe.topK, -1)).select(2, c.moe.topK - 1).unsqueeze(2);  // [batch, pos, 1]
    EXPECT_TRUE((lg.gather(2, indices) >= kth).all().item<bool>());
  }
}

TEST_P(Moe, ZeroingAnExpertRemovesItsWeightedOutput) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, GetParam());
  auto m = HookedTransformer::load(dir);
  const ModelConfig& c = m->config();
  const at::Tensor ids = referenceIds(dir);
  const int l = sparseLayers(c).back();
  const std::string ln2 = fmt::format("blocks.{}.ln2.hook_normalized", l);
  const auto clean = m->runWithCache(ids, {ln2, fmt::format("blocks.{}.mlp.hook_expert_*", l), fmt::format("blocks.{}.hook_mlp_out", l)},
                                     {}, at::Device(at::kCPU));
  const at::Tensor indices = clean.get(fmt::format("blocks.{}.mlp.hook_expert_indices", l)).reshape({48, c.moe.topK});
  const at::Tensor weights = clean.get(fmt::format("blocks.{}.mlp.hook_expert_weights", l)).reshape({48, c.moe.topK});
  // The expert routed to most often at this layer.
  const int64_t e = at::bincount(indices.reshape({-1}), {}, c.moe.nExperts).argmax().item<int64_t>();
  // Its weighted contribution by hand: w_e(token) · expert_e(ln2(x)) on the tokens routed to it, 0 elsewhere.
  const at::Tensor x = clean.get(ln2).reshape({48, c.dModel}).to(at::kDouble);
  const at::Tensor w = (weights.to(at::kDouble) * (indices == e).to(at::kDouble)).sum(1, true);  // [token, 1]
  const at::Tensor contribution = w * expertByHand(c, m->weights().layers[static_cast<size_t>(l)].moe.experts[static_cast<size_t>(e)], x);
  ASSERT_GT(contribution.abs().max().item<double>(), 1e-3);

  HookSet zero;
  zero.add(fmt::format("blocks.{}.mlp.hook_expert_out", l), [e](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
    at::Tensor out = t.clone();  // [batch, pos, expert, d_model]
    out.select(2, e).zero_();
    return out;
  });
  const auto ablated = m->runWithCache(ids, {fmt::format("blocks.{}.hook_mlp_out", l)}, {}, at::Device(at::kCPU), nullptr, &zero);
  const at::Tensor expected = clean.get(fmt::format("blocks.{}.hook_mlp_out", l)).reshape({48, c.dModel}).to(at::kDouble) - contribution;
  const double err = maxAbsErr(ablated.get(fmt::format("blocks.{}.hook_mlp_out", l)).reshape({48, c.dModel}), expected);
  std::printf("[moe] %-9s zeroing expert %lld of layer %d: mlp_out vs by-hand removal max|err| %.3g\n", GetParam().c_str(),
              static_cast<long long>(e), l, err);
  EXPECT_LE(err, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Families, Moe, ::testing::Values("mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss"),
                         [](const auto& info) { return info.param; });

TEST(GptOssSinks, EveryAttentionPathMatchesHuggingFace) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "gpt_oss");
  auto m = HookedTransformer::load(dir);
  ASSERT_TRUE(m->config().attnSinks);
  const auto ref = SafetensorsFile::open(dir / "reference.safetensors");
  const at::Tensor ids = ref.tensor("input_ids");
  const at::Tensor logitsRef = ref.tensor("logits");
  const at::Tensor attnRef = ref.tensor("attentions");  // [L, batch, head, query, key]: rows sum to < 1
  // HF's rows lose the sink's mass: the fixture's sinks (std 1) take a visible share.
  const at::Tensor loss = 1 - attnRef.sum(-1).to(at::kDouble);  // [L, batch, head, query]: p(sink)
  EXPECT_GT(loss.mean().item<double>(), 0.02);  // 4.9% on average in this fixture
  EXPECT_GE(loss.min().item<double>(), -1e-6);
  for (AttentionPath path : {AttentionPath::Explicit, AttentionPath::Fused, AttentionPath::Chunked, AttentionPath::Auto}) {
    ForwardOptions o;
    o.path = path;
    const ForwardResult r = m->forward(ids, o);
    EXPECT_LE(maxAbsErr(r.logits, logitsRef), 1e-4) << r.attentionPath;
    EXPECT_NE(r.attentionPath, "fused");  // sinks have no fused kernel: recorded as the path taken
    if (path == AttentionPath::Chunked) {
      EXPECT_EQ(r.attentionPath, "chunked");
    }
  }
  // hook_pattern is HF's attention weights: the sink column dropped, rows summing to 1 − p(sink).
  const auto cache = m->runWithCache(ids, {"blocks.*.attn.hook_pattern"}, {}, at::Device(at::kCPU));
  for (int l = 0; l < m->config().nLayers; ++l)
    EXPECT_LE(maxAbsErr(cache.at("pattern", l), attnRef[l]), 1e-4) << "layer " << l;
  // Sliding layer 0 (window 8) masks keys 8 or more back; full layer 1 does not.
  EXPECT_EQ(m->config().windowOf(0), 8);
  EXPECT_EQ(m->config().windowOf(1), 0);
  EXPECT_EQ(cache.at("pattern", 0)[0][0][20][12].item<float>(), 0.0f);
  EXPECT_GT(cache.at("pattern", 1)[0][0][20][12].item<float>(), 0.0f);
}

TEST(MoeConfig, SparseLayersAndParameterCount) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "qwen2_moe");
  auto m = HookedTransformer::load(dir);
  const ModelConfig& c = m->config();
  EXPECT_EQ(sparseLayers(c), (std::vector<int>{0, 2}));  // mlp_only_layers [1]
  EXPECT_EQ(c.moe.dShared, 48);
  EXPECT_FALSE(c.moe.normTopK);
  // Parameters: every tensor of model.safetensors, once.
  int64_t inFile = 0;
  const auto file = SafetensorsFile::open(dir / "model.safetensors");
  for (const auto& name : file.names()) inFile += file.tensor(name).numel();
  EXPECT_EQ(m->parameterCount(), inFile);
  const auto names = m->hookNames();
  auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  EXPECT_TRUE(has("blocks.0.mlp.hook_expert_out"));
  EXPECT_TRUE(has("blocks.0.mlp.hook_shared_expert_out"));
  EXPECT_FALSE(has("blocks.0.mlp.hook_post"));  // sparse layer: no dense MLP
  EXPECT_TRUE(has("blocks.1.mlp.hook_post"));   // dense layer
  EXPECT_FALSE(has("blocks.1.mlp.hook_router_logits"));
}

}  // namespace

namespace {

TEST(GptOssConfig, YarnSinksWindowsAndExperts) {
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "gpt_oss");
  const ModelConfig c = ModelConfig::fromJsonFile(dir / "config.json");
  EXPECT_EQ(c.ropeScaling.kind, RopeScalingKind::Yarn);
  EXPECT_DOUBLE_EQ(c.ropeScaling.factor, 32.0);
  EXPECT_DOUBLE_EQ(c.ropeScaling.attentionFactor, 0.1 * std::log(32.0) + 1.0);  // mscale, on cos and sin
  EXPECT_FALSE(c.ropeScaling.truncate);
  EXPECT_EQ(c.ropeScaling.originalMaxPositionEmbeddings, 4096);
  EXPECT_TRUE(c.attnSinks && c.attnQkvBias && c.attnOutBias);
  EXPECT_EQ(c.layerWindows, (std::vector<int>{8, 0}));
  EXPECT_EQ(c.moe.order, RouterOrder::TopKThenSoftmax);
  EXPECT_EQ(c.moe.activation, ExpertActivation::ClampedSwiglu);
  EXPECT_DOUBLE_EQ(c.moe.swigluLimit, 7.0);
  EXPECT_TRUE(c.moe.routerBias && c.moe.expertBias);
  EXPECT_NE(c.summary().find("attn_sinks"), std::string::npos);
  EXPECT_NE(c.summary().find("top-k then softmax"), std::string::npos);
}

}  // namespace
