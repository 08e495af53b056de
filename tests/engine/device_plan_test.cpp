// Splitting a model's blocks over devices (issue #23): the layer plan, the --device list, hooks seeing
// block activations on the home device, and a forced split on the CPU (home "cpu:0", blocks on "cpu": two
// devices to mechscope, exact copies) that must reproduce the one-device forward, gradients and KV cache.
// The same comparison on GPUs: DevicePlanCuda below and scripts/device/split_devices.sh.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <numeric>

#include <fmt/format.h>

#include "core/common/device_memory.hpp"
#include "core/common/errors.hpp"
#include "core/model/device_plan.hpp"
#include "core/model/hooked_transformer.hpp"
#include "engine_test_support.hpp"

namespace mechscope {
namespace {

const at::Device kGpu0(at::kCUDA, 0), kGpu1(at::kCUDA, 1), kGpu2(at::kCUDA, 2);

WeightBytes uniformBytes(int layers, int64_t perLayer, int64_t home) {
  WeightBytes b;
  b.home = home;
  b.layers.assign(static_cast<size_t>(layers), perLayer);
  return b;
}

/// Number of blocks of `plan` on `d`.
int blocksOn(const DevicePlan& plan, at::Device d) {
  return static_cast<int>(std::count(plan.layers.begin(), plan.layers.end(), d));
}

TEST(DevicePlan, EqualBlocksSplitEvenlyInOrder) {
  const DevicePlan p = planLayerSplit({kGpu0, kGpu1}, uniformBytes(32, 100, 0));
  EXPECT_EQ(p.home, kGpu0);
  EXPECT_TRUE(p.split());
  for (int l = 0; l < 32; ++l) EXPECT_EQ(p.layers[static_cast<size_t>(l)], l < 16 ? kGpu0 : kGpu1) << l;
  EXPECT_EQ(p.label(), "cuda:0,cuda:1");
  EXPECT_EQ(p.describe(), "cuda:0 layers 0-15, cuda:1 layers 16-31 (embeddings and unembedding on cuda:0)");
}

TEST(DevicePlan, HomePartsCountOnTheFirstDevice) {
  // 10 blocks of 100 B and 400 B of embeddings: 1,400 B in all, 700 B per device → 3 blocks on the first
  // (400 + 300), 7 on the second (700).
  const WeightBytes b = uniformBytes(10, 100, 400);
  const DevicePlan p = planLayerSplit({kGpu0, kGpu1}, b);
  EXPECT_EQ(blocksOn(p, kGpu0), 3);
  EXPECT_EQ(blocksOn(p, kGpu1), 7);
  EXPECT_EQ(bytesOnDevice(p, b, kGpu0), 700);
  EXPECT_EQ(bytesOnDevice(p, b, kGpu1), 700);
  EXPECT_EQ(bytesOnDevice(p, b, kGpu0) + bytesOnDevice(p, b, kGpu1), b.total());
}

TEST(DevicePlan, EveryDeviceGetsAContiguousRunOfAtLeastOneBlock) {
  // Embeddings larger than the whole share of the first device still leave it one block; three devices
  // over four blocks: runs of 1, 1 and 2 at most, in order.
  for (const auto& [layers, home] : std::vector<std::pair<int, int64_t>>{{4, 10000}, {4, 0}, {3, 0}, {7, 50}, {40, 900}}) {
    const WeightBytes b = uniformBytes(layers, 100, home);
    const DevicePlan p = planLayerSplit({kGpu0, kGpu1, kGpu2}, b);
    ASSERT_EQ(static_cast<int>(p.layers.size()), layers);
    int device = 0;
    const std::vector<at::Device> order{kGpu0, kGpu1, kGpu2};
    for (int l = 0; l < layers; ++l) {
      while (p.layers[static_cast<size_t>(l)] != order[static_cast<size_t>(device)]) ++device;  // never goes back
      ASSERT_LT(device, 3) << "block " << l << " breaks the order (layers " << layers << ")";
    }
    for (const auto& d : order) EXPECT_GE(blocksOn(p, d), 1) << layers << " blocks, home " << home;
    int64_t sum = 0;
    for (const auto& d : order) sum += bytesOnDevice(p, b, d);
    EXPECT_EQ(sum, b.total());
  }
}

TEST(DevicePlan, UnevenBlocksBalanceBytesNotCounts) {
  // Mixture-of-experts blocks (every other one 9× larger) are balanced by bytes: the first device's bytes
  // are within one block of half the total.
  WeightBytes b;
  for (int l = 0; l < 12; ++l) b.layers.push_back(l % 2 ? 900 : 100);
  const DevicePlan p = planLayerSplit({kGpu0, kGpu1}, b);
  const int64_t first = bytesOnDevice(p, b, kGpu0);
  EXPECT_LE(std::abs(static_cast<double>(first) - b.total() / 2.0), 900 / 2.0 + 1) << first << " of " << b.total();
}

TEST(DevicePlan, OneDeviceIsNotASplit) {
  const DevicePlan p = planLayerSplit({kGpu1}, uniformBytes(5, 10, 10));
  EXPECT_FALSE(p.split());
  EXPECT_EQ(blocksOn(p, kGpu1), 5);
  EXPECT_EQ(p.label(), "cuda:1");
  EXPECT_EQ(p.describe(), "cuda:1");
}

TEST(DevicePlan, DeviceListsAreParsedAndCheckedAsAWhole) {
  EXPECT_EQ(parseDeviceList("cpu"), std::vector<at::Device>{at::Device(at::kCPU)});
  EXPECT_EQ(parseDeviceList(" cpu:0 , cpu "), (std::vector<at::Device>{at::Device(at::kCPU, 0), at::Device(at::kCPU)}));
  EXPECT_TRUE(parseDeviceList("auto").empty());
  EXPECT_THROW(parseDeviceList("cpu,cpu"), InputError);
  EXPECT_THROW(parseDeviceList("cpu,"), InputError);
  EXPECT_THROW(parseDeviceList(""), InputError);
  EXPECT_THROW(parseDeviceList("tpu:0"), InputError);
  if (!at::hasCUDA()) {
    try {
      (void)parseDeviceList("cpu,cuda:1");
      FAIL() << "a CUDA device was accepted without CUDA";
    } catch (const UnsupportedError& e) {
      EXPECT_NE(std::string(e.what()).find("cuda:1"), std::string::npos) << e.what();
    }
  }
}

TEST(DevicePlan, WeightBytesMatchEachBlocksParameters) {
  // The per-block estimate against the loaded blocks' tensors (dense, GQA, MoE with every expert).
  int seen = 0;
  for (const std::string family : {"gpt2", "llama", "qwen3", "mixtral", "qwen2_moe", "gpt_oss"}) {
    const auto folder = test::fixtureModel(family);
    if (!folder) continue;
    const auto model = HookedTransformer::load(*folder);
    const WeightBytes b = estimateWeightBytes(model->config(), 4);
    for (int l = 0; l < model->config().nLayers; ++l) {
      const LayerWeights& L = model->weights().layers[static_cast<size_t>(l)];
      int64_t n = 0;
      forEachLayerTensor(L, [&](const std::string&, const at::Tensor& t) { n += t.defined() ? t.numel() : 0; });
      // Biases, sinks and q/k-norms are left out of the estimate: within 5 % of the block's parameters.
      EXPECT_NEAR(static_cast<double>(b.layers[static_cast<size_t>(l)]) / (4.0 * n), 1.0, 0.05) << family << " block " << l;
    }
    ++seen;
  }
  if (seen == 0) GTEST_SKIP() << "no family fixtures";
}

TEST(DevicePlan, HooksOnASplitModelSeeTheHomeDeviceAndReplacementsReturn) {
  // applyOn with home "cpu:0": a CPU tensor (device "cpu") is another device to it, so the round trip runs.
  const at::Device home(at::kCPU, 0);
  const at::Tensor t = at::arange(6, at::kFloat).view({2, 3});
  HookSet readers;
  at::Device seen(at::kCUDA, 0);
  at::Tensor seenTensor;
  readers.add("x", [&](const at::Tensor& a, const HookContext&) -> std::optional<at::Tensor> {
    seen = a.device();
    seenTensor = a;
    return std::nullopt;
  });
  const at::Tensor r = readers.applyOn(t, HookContext{"x", 0, -1}, home);
  EXPECT_TRUE(r.is_same(t)) << "a reader without gradients must leave the block's own tensor in place";
  EXPECT_FALSE(seenTensor.is_same(t)) << "the hook must see a moved copy";
  EXPECT_TRUE(at::equal(seenTensor, t));

  HookSet writer;
  writer.add("x", [](const at::Tensor& a, const HookContext&) -> std::optional<at::Tensor> { return a * 2; });
  EXPECT_TRUE(at::equal(writer.applyOn(t, HookContext{"x", 0, -1}, home), t * 2));

  // With autograd, the pass continues with what the hooks saw: a gradient taken there reaches it.
  at::AutoGradMode grad(true);
  const at::Tensor leaf = t.clone().requires_grad_(true);
  at::Tensor captured;
  HookSet capture;
  capture.add("x", [&](const at::Tensor& a, const HookContext&) -> std::optional<at::Tensor> {
    captured = a;
    captured.retain_grad();
    return std::nullopt;
  });
  (capture.applyOn(leaf * 1.0, HookContext{"x", 0, -1}, home) * 3).sum().backward();
  ASSERT_TRUE(captured.grad().defined()) << "the pass went on without what the hook saw";
  EXPECT_TRUE(at::allclose(captured.grad(), at::full_like(t, 3.0)));
  EXPECT_TRUE(at::allclose(leaf.grad(), at::full_like(t, 3.0)));
}

/// A model whose blocks run on "cpu" while its home is "cpu:0": a split to mechscope, exact copies.
std::unique_ptr<HookedTransformer> forcedCpuSplit(const std::filesystem::path& folder) {
  auto plain = HookedTransformer::load(folder);
  ModelWeights w = plain->weights();
  DevicePlan plan;
  plan.home = at::Device(at::kCPU, 0);
  const int L = plain->config().nLayers;
  for (int l = 0; l < L; ++l) plan.layers.push_back(l < L / 2 ? plan.home : at::Device(at::kCPU));
  EXPECT_TRUE(plan.split());
  return std::make_unique<HookedTransformer>(plain->config(), w, plan, plain->dtype(), folder);
}

TEST(DevicePlan, ForcedCpuSplitReproducesForwardHooksAndCache) {
  int seen = 0;
  for (const std::string family : {"gpt2", "llama", "gemma2", "gpt_oss", "qwen2_moe", "phi3"}) {
    const auto folder = test::fixtureModel(family);
    if (!folder) continue;
    const auto one = HookedTransformer::load(*folder);
    const auto split = forcedCpuSplit(*folder);
    const at::Tensor tokens = at::arange(24, at::kLong).remainder(one->config().dVocab).view({2, 12});  // [batch, pos]
    // Every hook cached, and a replacement hook in the second half (zeroing a head's z).
    const int patched = one->config().nLayers - 1;
    HookSet zero;
    zero.add(fmt::format("blocks.{}.attn.hook_z", patched), [](const at::Tensor& z, const HookContext&) -> std::optional<at::Tensor> {
      at::Tensor o = z.clone();
      o.select(2, 0).zero_();
      return o;
    });
    ForwardResult r1, r2;
    const ActivationCache c1 = one->runWithCache(tokens, {"*"}, {}, {}, &r1, &zero);
    const ActivationCache c2 = split->runWithCache(tokens, {"*"}, {}, {}, &r2, &zero);
    EXPECT_TRUE(at::equal(r1.logits, r2.logits)) << family;
    ASSERT_EQ(c1.tensors.size(), c2.tensors.size()) << family;
    for (const auto& [name, t] : c1.tensors) EXPECT_TRUE(at::equal(t, c2.tensors.at(name))) << family << " " << name;
    // Generation through the KV cache: two incremental steps equal the full forward's last logits.
    KVCache cache;
    (void)split->forwardCached(tokens.narrow(1, 0, 10), cache, 0);
    const ForwardResult step = split->forwardCached(tokens.narrow(1, 10, 2), cache, 1);
    const at::Tensor full = one->forward(tokens).logits.narrow(1, 10, 2);
    EXPECT_TRUE(at::allclose(step.logits, full, 1e-5, 1e-5)) << family << ": " << (step.logits - full).abs().max().item<double>();
    // forwardFrom a middle block, stopped before the last: the residual comes back to the home device.
    ForwardOptions stop;
    stop.stopAtLayer = one->config().nLayers - 1;
    const at::Tensor mid = c1.tensors.at("blocks.1.hook_resid_pre");
    const ForwardResult a = one->forwardFrom(1, mid, stop), b = split->forwardFrom(1, mid, stop);
    EXPECT_TRUE(at::equal(a.residual, b.residual)) << family;
    ++seen;
  }
  if (seen == 0) GTEST_SKIP() << "no family fixtures";
}

TEST(DevicePlanCuda, SplitOverCudaAndCpuMatchesOneGpu) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: the GPU box runs this (scripts/device/split_devices.sh)";
  int seen = 0;
  const int gpus = cudaDeviceCount();
  const std::string splitSpec = gpus >= 2 ? "cuda:0,cuda:1" : "cuda:0,cpu";
  for (const std::string family : {"gpt2", "llama", "gemma2", "gpt_oss", "qwen2_moe", "phi3", "mixtral", "olmo2"}) {
    const auto folder = test::fixtureModel(family);
    if (!folder) continue;
    const auto one = HookedTransformer::load(*folder, LoadOptions{"cuda:0", "fp32"});
    const auto split = HookedTransformer::load(*folder, LoadOptions{splitSpec, "fp32"});
    ASSERT_TRUE(split->devicePlan().split()) << split->devicePlan().describe();
    const at::Tensor tokens = at::arange(24, at::kLong).remainder(one->config().dVocab).view({2, 12});
    ForwardResult r1, r2;
    const ActivationCache c1 = one->runWithCache(tokens, {"*"}, {}, at::Device(at::kCPU), &r1);
    const ActivationCache c2 = split->runWithCache(tokens, {"*"}, {}, at::Device(at::kCPU), &r2);
    const double diff = (r1.logits.cpu() - r2.logits.cpu()).abs().max().item<double>();
    EXPECT_LT(diff, test::parityTolerance(r1.logits.cpu())) << family << " on " << splitSpec;
    for (const auto& [name, t] : c1.tensors)
      EXPECT_TRUE(at::allclose(t.to(at::kDouble), c2.tensors.at(name).to(at::kDouble), 1e-4, 1e-4)) << family << " " << name;
    ++seen;
  }
  if (seen == 0) GTEST_SKIP() << "no family fixtures";
}

}  // namespace
}  // namespace mechscope
