// attn.hook_lse (core/model/forward_pass.cpp): where the fused CUDA kernel returns its row log-sum-exps, the forward
// shows them to the hook. Checked against log Σ_j exp(scale · q_i · k_j) over j ≤ i computed in fp64 from the very
// q and k the kernel read (hook_rot_q/k), with a bound from the kernel's fp32 arithmetic; elsewhere the hook never
// fires.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/version.h>

#include <cmath>
#include <map>

#include "core/model/hooked_transformer.hpp"
#include "core/synth/synth_model.hpp"
#include "engine_test_support.hpp"

using namespace mechscope;

namespace {

struct LseRun {
  std::map<int, at::Tensor> q, k, lse;  // per layer: [1, pos, head, d] / [1, pos, kv_head, d] / [1, head, pos]
};

/// A tiny random Qwen3 (grouped queries, rotary, qk-norm) on `device` in `dtype`, run on `n` tokens with hook_lse read
/// and the queries scaled by 6 in hook_rot_q, so that scores reach several units (a wrong scale or mask shows).
LseRun runTinyQwen3(const std::string& device, const std::string& dtype, int64_t n) {
  const auto dir = test::tempDir("forward_lse");
  synth::writeSynthFolder(dir, "qwen3", "tiny", 7, "fp32");
  auto model = HookedTransformer::load(dir, LoadOptions{device, dtype});
  LseRun run;
  HookSet hooks;
  hooks.add("blocks.*.attn.hook_rot_q", [&](const at::Tensor& q, const HookContext& hc) -> std::optional<at::Tensor> {
    at::Tensor scaled = q * 6;
    run.q[hc.layer] = scaled;
    return scaled;
  });
  hooks.add("blocks.*.attn.hook_rot_k", [&](const at::Tensor& k, const HookContext& hc) -> std::optional<at::Tensor> {
    run.k[hc.layer] = k;
    return std::nullopt;
  });
  hooks.add("blocks.*.attn.hook_lse", [&](const at::Tensor& lse, const HookContext& hc) -> std::optional<at::Tensor> {
    run.lse[hc.layer] = lse;
    return std::nullopt;
  });
  const at::Tensor ids = (at::arange(n, at::kLong) * 7 + 3).remainder(model->config().dVocab).unsqueeze(0);  // [1, pos]
  (void)model->forward(ids, ForwardOptions{}, &hooks);
  return run;
}

}  // namespace

TEST(ForwardLse, NeverFiresOnTheCpu) {
  const LseRun run = runTinyQwen3("cpu", "fp32", 24);
  EXPECT_FALSE(run.q.empty());
  EXPECT_TRUE(run.lse.empty()) << "no fused kernel returns normalisers on the CPU";
}

TEST(ForwardLseCuda, EqualsTheFp64NormalisersOfTheKernelsInputs) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device in this build/machine";
#if TORCH_VERSION_MAJOR < 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR < 6)
  GTEST_SKIP() << "cuDNN's normalisers need LibTorch ≥ 2.6";
#else
  const int64_t n = 200;
  const LseRun run = runTinyQwen3("cuda", "bf16", n);
  ASSERT_FALSE(run.lse.empty()) << "a plain causal bf16 pass on CUDA should show cuDNN's normalisers";
  ASSERT_EQ(run.lse.size(), run.q.size());
  for (const auto& [l, lse] : run.lse) {
    const at::Tensor q = run.q.at(l)[0].to(at::kDouble).cpu().transpose(0, 1);  // [head, pos, d]
    at::Tensor k = run.k.at(l)[0].to(at::kDouble).cpu().transpose(0, 1);        // [kv_head, pos, d]
    k = k.repeat_interleave(q.size(0) / k.size(0), 0);                          // [head, pos, d]
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(2)));
    at::Tensor s = at::matmul(q, k.transpose(1, 2)) * scale;  // [head, pos, pos] fp64 of the bf16 inputs
    const at::Tensor future = at::ones({n, n}, at::kBool).triu(1);
    const at::Tensor exact = at::logsumexp(s.masked_fill(future, -INFINITY), {-1});  // [head, pos]
    // The kernel's error: each score a d-term fp32 dot product (≤ d·u·Σ|q k|, u = 2⁻²⁴), and the sum of at most n
    // fp32 exponentials rescaled by running maxima (relative ≤ (n + 8)·u, i.e. that much of the log); 4× for margin.
    const at::Tensor absDots = at::matmul(q.abs(), k.abs().transpose(1, 2)) * scale;  // [head, pos, pos]
    const at::Tensor dotBound = std::get<0>(absDots.masked_fill(future, 0).max(-1)) * (q.size(2) * std::ldexp(1.0, -24));
    const at::Tensor bound = 4 * (dotBound + (n + 8) * std::ldexp(1.0, -24));
    const at::Tensor got = lse[0].to(at::kDouble).cpu().reshape({q.size(0), n});
    const at::Tensor err = (got - exact).abs();
    EXPECT_TRUE((err <= bound).all().item<bool>()) << "layer " << l << ": largest error " << err.max().item<double>() << ", bound "
                                                   << bound.min().item<double>() << " … " << bound.max().item<double>();
    // A missing scale or mask would be far outside: the scores span several units.
    EXPECT_GT((s.masked_fill(future, 0).abs()).max().item<double>(), 1.0) << "the test's scores should not be near zero";
  }
#endif
}
