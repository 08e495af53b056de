// applyModelNorm (core/model/normalization.hpp) against RMSNorm computed in fp64 from the same inputs, with bounds
// from the rounding each path does: fp32 HF order (a sum of d squares, rsqrt, two products), bf16 HF order (two
// roundings to bf16: x̂, then w·x̂), Gemma's fp32 weight (one rounding), and on CUDA LibTorch's fused kernel with the
// same roundings (and nearly always HF's very values). Rows have mean squares near eps, so a missing or misplaced eps, weight or cast is off by far more.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/version.h>

#include <cmath>
#include <cstdlib>

#include "core/model/normalization.hpp"

using namespace mechscope;

namespace {

constexpr double kNormTestEps = 1e-2;
constexpr double kNormBf16Unit = 1.0 / 256;  // unit roundoff of bf16's 8 significand bits: |fl(t) − t| ≤ u·|t|

ModelConfig rmsNormConfig(bool scaleFp32) {
  ModelConfig c;
  c.normKind = NormKind::RMSNorm;
  c.normEps = kNormTestEps;
  c.normScaleFp32 = scaleFp32;
  return c;
}

/// x [rows, d] with row mean squares from 2e-3 to 5e-2 (either side of eps), w [d] around 1 (fp32, CPU).
std::pair<at::Tensor, at::Tensor> normInputs(int64_t rows, int64_t d) {
  at::manual_seed(7);
  const at::Tensor rowScale = at::linspace(0.045, 0.22, rows, at::kFloat).unsqueeze(1);  // [rows, 1]
  return {at::randn({rows, d}, at::kFloat) * rowScale, 1.0 + 0.5 * at::randn({d}, at::kFloat)};
}

/// RMSNorm in fp64 of the given (already rounded) inputs: x · rsqrt(mean(x²) + eps) · w.
at::Tensor exactRmsNorm(const at::Tensor& x, const at::Tensor& w) {
  const at::Tensor xd = x.to(at::kDouble).cpu(), wd = w.to(at::kDouble).cpu();
  return xd * at::rsqrt(xd.pow(2).mean(-1, true) + kNormTestEps) * wd;
}

/// The largest |y − t| / |t| (y the result, t the fp64 value).
double worstNormError(const at::Tensor& y, const at::Tensor& t) {
  return ((y.to(at::kDouble).cpu() - t).abs() / t.abs().clamp_min(1e-300)).max().item<double>();
}

}  // namespace

TEST(ModelNorm, RmsNormFp32WithinItsRoundingOfFp64) {
  const auto [x, w] = normInputs(16, 64);
  const at::Tensor y = applyModelNorm(rmsNormConfig(false), x, w, {});
  // mean of 64 squares (relative error ≤ 64·u32 summed naively), halved by rsqrt, + rsqrt's own and two products:
  // (64 / 2 + 5) · 2⁻²⁴ ≈ 2.2e-6. Leaving eps out moves these rows by 10–40 %.
  EXPECT_LE(worstNormError(y, exactRmsNorm(x, w)), (64.0 / 2 + 5) * std::ldexp(1.0, -24));
}

TEST(ModelNorm, RmsNormBf16RoundsTwiceAsHuggingFaceDoes) {
  const auto [xf, wf] = normInputs(16, 64);
  const at::Tensor x = xf.to(at::kBFloat16), w = wf.to(at::kBFloat16);
  const at::Tensor t = exactRmsNorm(x, w);
  const double worst = worstNormError(applyModelNorm(rmsNormConfig(false), x, w, {}), t);
  // x̂ rounded to bf16, then w·x̂ rounded again: ≤ 2u + u², plus fp32's ~1e-6 on the statistics.
  EXPECT_LE(worst, 2 * kNormBf16Unit + kNormBf16Unit * kNormBf16Unit + 1e-5);
  EXPECT_GT(worst, 1e-5) << "bf16 output expected: the result cannot be this close to fp64";
  // Gemma / OLMo-2 apply the weight in fp32 first: one rounding.
  EXPECT_LE(worstNormError(applyModelNorm(rmsNormConfig(true), x, w, {}), t), kNormBf16Unit + 1e-5);
}

TEST(ModelNormCuda, FusedRmsNormKeepsHuggingFacesRoundings) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device in this build/machine";
  const auto [xf, wf] = normInputs(64, 256);
  const at::Tensor x = xf.to(at::kBFloat16).cuda(), w = wf.to(at::kBFloat16).cuda();
  const ModelConfig c = rmsNormConfig(false);
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 8)
  ASSERT_TRUE(fusedRmsNormApplies(c, x, w)) << "LibTorch ≥ 2.8 on CUDA in bf16 should take the fused kernel";
#endif
  const at::Tensor t = exactRmsNorm(x, w);
  const ModelConfig gemma = rmsNormConfig(true);
  const at::Tensor fused = applyModelNorm(c, x, w, {}), fusedGemma = applyModelNorm(gemma, x, w, {});
  // HF's roundings kept: x̂ then w·x̂ for Llama-like families, once after the fp32 weight for Gemma / OLMo-2.
  EXPECT_LE(worstNormError(fused, t), 2 * kNormBf16Unit + kNormBf16Unit * kNormBf16Unit + 1e-5);
  EXPECT_LE(worstNormError(fusedGemma, t), kNormBf16Unit + 1e-5);
  setenv("MECHSCOPE_FUSED_RMSNORM", "0", 1);
  EXPECT_FALSE(fusedRmsNormApplies(c, x, w));
  const at::Tensor hf = applyModelNorm(c, x, w, {}), hfGemma = applyModelNorm(gemma, x, w, {});
  unsetenv("MECHSCOPE_FUSED_RMSNORM");
  EXPECT_LE(worstNormError(hf, t), 2 * kNormBf16Unit + kNormBf16Unit * kNormBf16Unit + 1e-5);
  // The same roundings in the same order: the two differ only where the fp32 mean of squares (summed in another
  // order) moves a value across a rounding boundary, by one bf16 unit in the last place (2u relative) at most.
  EXPECT_LE(worstNormError(fused, hf.to(at::kDouble).cpu()), 2 * kNormBf16Unit + 1e-6);
  EXPECT_LE(worstNormError(fusedGemma, hfGemma.to(at::kDouble).cpu()), 2 * kNormBf16Unit + 1e-6);
  const double same = fused.eq(hf).to(at::kDouble).mean().item<double>();
  EXPECT_GT(same, 0.9) << "the fused path should give HF's bf16 values almost everywhere";
  // fp32 keeps HF's order on every device (the CUDA parity tests' bounds).
  EXPECT_FALSE(fusedRmsNormApplies(c, x.to(at::kFloat), w.to(at::kFloat)));
}
