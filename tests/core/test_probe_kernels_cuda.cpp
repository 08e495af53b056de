// The probe's CUDA kernels (core/probe/far_sums_kernel.cu, near_band_kernel.cu; skipped without a GPU or without nvcc
// at configure time) against fp64 sums of the same bf16/fp16 values on the CPU. Far sums: every row sum
// T_i = Σ_{j ≤ i−a} p_ij (rows i ≥ R) and column sum C_j = Σ_{i ≥ max(j+a, R)} p_ij. Near band: weighted sums of
// p_{i,i−δ}, δ < 32, along rows and columns. Sizes leave partial key blocks (128 keys), query tiles (64 rows) and row
// blocks (32 rows); some cases read q and k through strided views, as a fused qkv projection gives them. Logit
// statistics (core/model/logit_stats_kernel.cu): each row's entropy and target log-probability against fp64 ones.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/model/logit_stats.hpp"
#include "core/probe/probe_kernels.hpp"

using namespace mechscope;
using probe_detail::farSumsOnDevice;
using probe_detail::nearBandOnDevice;

namespace {

struct Case {
  int64_t n, heads, kvHeads, d, shift, rowStart;
  bool strided;
};

/// max over elements of |got − ref| / (ref + 1e-30): every term of a sum is positive, so each sum keeps the relative
/// error of its terms.
double maxRelErr(const at::Tensor& got, const at::Tensor& ref) {
  const at::Tensor g = got.to(at::kDouble).cpu();
  return ((g - ref).abs() / (ref + 1e-30)).max().item<double>();
}

/// Random q/k of a case (strided views when asked) and the fp64 softmax pieces of the same values.
struct Inputs {
  at::Tensor q, k;     // [pos, head, d_head], [pos, kv_head, d_head] on CUDA
  at::Tensor p, lse;   // [head, q, k] fp64 causal probabilities, [head, n] their normalisers (CPU)
  double scale = 1.0;
};

Inputs makeInputs(const Case& c, at::ScalarType dtype) {
  Inputs x;
  x.scale = 1.0 / std::sqrt(static_cast<double>(c.d));
  x.q = (at::randn({c.n, c.heads, c.d}) * 1.5).to(dtype).cuda();  // [pos, head, d_head]
  x.k = at::randn({c.n, c.kvHeads, c.d}).to(dtype).cuda();          // [pos, kv_head, d_head]
  if (c.strided) {  // the same values inside wider rows, as a slice of a fused projection
    at::Tensor qw = at::zeros({c.n, c.heads, c.d + 64}, x.q.options()), kw = at::zeros({c.n, c.kvHeads, c.d + 64}, x.k.options());
    qw.narrow(2, 0, c.d).copy_(x.q);
    kw.narrow(2, 0, c.d).copy_(x.k);
    x.q = qw.narrow(2, 0, c.d);
    x.k = kw.narrow(2, 0, c.d);
  }
  const at::Tensor qd = x.q.to(at::kDouble).cpu(), kd = x.k.to(at::kDouble).cpu().repeat_interleave(c.heads / c.kvHeads, 1);
  const at::Tensor s = at::matmul(qd.permute({1, 0, 2}), kd.permute({1, 2, 0})) * x.scale;  // [head, q, k]
  const at::Tensor i = at::arange(c.n, at::kLong).unsqueeze(1), j = at::arange(c.n, at::kLong).unsqueeze(0);
  x.lse = at::logsumexp(s.masked_fill(j > i, -INFINITY), -1);                     // [head, n]
  x.p = (s - x.lse.unsqueeze(-1)).exp().masked_fill(j > i, 0.0);                // [head, q, k]
  return x;
}

void checkCase(const Case& c, at::ScalarType dtype) {
  SCOPED_TRACE(::testing::Message() << "n " << c.n << " heads " << c.heads << "/" << c.kvHeads << " d " << c.d << " shift " << c.shift
                                    << " R " << c.rowStart << (c.strided ? " strided" : "") << (dtype == at::kHalf ? " fp16" : " bf16"));
  const Inputs x = makeInputs(c, dtype);
  const at::Tensor q = x.q, k = x.k, lse = x.lse;
  const double scale = x.scale;
  if (c.strided) {
    ASSERT_FALSE(q.is_contiguous());
  }
  const at::Tensor i = at::arange(c.n, at::kLong).unsqueeze(1), j = at::arange(c.n, at::kLong).unsqueeze(0);
  const at::Tensor far = ((i - j) >= c.shift).logical_and(i >= c.rowStart);  // [q, k]
  const at::Tensor p = x.p.masked_fill(far.logical_not(), 0.0);             // [head, q, k]
  const at::Tensor rowRef = p.sum(-1), colRef = p.sum(-2);                   // [head, n]

  const auto got = farSumsOnDevice(q, k, lse.cuda(), scale, c.shift, c.rowStart);
  ASSERT_TRUE(got.has_value()) << "the kernel should apply to this case";
  // p_ij has the relative error of its exponent: fp32 scores of d exact products (≈ √d·u·Σ|q_k k_k|·scale ≈ 1e-5 here),
  // the lse rounded to fp32 (u·|lse|) and ex2.approx (2⁻²²); the sums add fp32 rounding over ≤ 16 terms. 1e-4 is
  // far under what a wrong mask or normaliser costs (one p_ij ~ 1/i of a sum).
  const double rowErr = maxRelErr(got->rowMass, rowRef), colErr = maxRelErr(got->colMass, colRef);
  std::printf("    largest error: rows %.2e, columns %.2e\n", rowErr, colErr);
  EXPECT_LT(rowErr, 1e-4);
  EXPECT_LT(colErr, 1e-4);
  EXPECT_EQ(got->rowMass.cpu().slice(1, 0, std::min(c.n, std::max(c.rowStart, c.shift))).abs().sum().item<double>(), 0.0)
      << "rows before max(R, a) have no far keys";
}

TEST(FarSumsCuda, RowAndColumnSumsEqualFp64SumsOfTheSameValues) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device in this build/machine";
  if (!probe_detail::probeKernelsBuilt()) GTEST_SKIP() << "built without the probe's CUDA kernels (no nvcc when configured)";
  at::manual_seed(11);
  const Case cases[] = {
      {1000, 4, 2, 128, 32, 0, false},  // GQA, waad-fai's shift, partial last key block and query tile
      {300, 2, 2, 64, 1, 137, false},   // FAI's default horizon a = 1, rows from R
      {129, 3, 1, 128, 0, 0, true},     // a = 0 (the diagonal counts), strided views, one kv head
      {700, 2, 1, 64, 200, 650, true},  // a wider than a key block, R late
  };
  for (const Case& c : cases)
    for (at::ScalarType dt : {at::kBFloat16, at::kHalf}) checkCase(c, dt);
  // Every block shape the kernel is built in (MECHSCOPE_FAR_SUMS_SHAPE, for timing them), on the cases with masks.
  for (const char* shape : {"1", "2", "3"}) {
    SCOPED_TRACE(std::string("block shape ") + shape);
    setenv("MECHSCOPE_FAR_SUMS_SHAPE", shape, 1);
    checkCase(cases[0], at::kBFloat16);
    checkCase(cases[3], at::kHalf);
  }
  unsetenv("MECHSCOPE_FAR_SUMS_SHAPE");
}

TEST(NearBandCuda, WeightedRowAndColumnSumsEqualFp64SumsOfTheSameValues) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device in this build/machine";
  if (!probe_detail::probeKernelsBuilt()) GTEST_SKIP() << "built without the probe's CUDA kernels (no nvcc when configured)";
  at::manual_seed(12);
  const int64_t width = probe_detail::nearBandWidth();
  ASSERT_EQ(width, 32);
  const Case cases[] = {
      {1000, 4, 2, 128, 0, 0, false},  // GQA, partial last row block
      {301, 2, 2, 64, 0, 77, true},    // rows from R, strided views
      {20, 3, 1, 128, 0, 0, false},    // shorter than the band: keys before 0 drop out
  };
  for (const Case& c : cases)
    for (at::ScalarType dt : {at::kBFloat16, at::kHalf}) {
      SCOPED_TRACE(::testing::Message() << "n " << c.n << " d " << c.d << " R " << c.rowStart << (dt == at::kHalf ? " fp16" : " bf16"));
      const Inputs x = makeInputs(c, dt);
      // Weights as the probe uses them: a distance's near part (δ on [1, 31]), WAAD's window W = 10 (W − δ on [0, 9]), and
      // FAI's near columns (1 on [1, 31]).
      const at::Tensor delta = at::arange(width, at::kDouble);
      const at::Tensor rowW = at::stack({delta, at::where(delta < 10, 10.0 - delta, at::zeros_like(delta))});  // [2, 32]
      const at::Tensor colW = (delta >= 1).to(at::kDouble);                                                 // [32]
      const auto got = nearBandOnDevice(x.q, x.k, x.lse.cuda(), x.scale, c.rowStart, rowW.cuda(), colW.cuda());
      ASSERT_TRUE(got.has_value());
      // Reference: p_{i, i−δ} of the fp64 pattern, rows before R dropped.
      const at::Tensor i = at::arange(c.n, at::kLong).unsqueeze(1), j = at::arange(c.n, at::kLong).unsqueeze(0);
      const at::Tensor off = (i - j).to(at::kDouble);  // [q, k] δ
      const at::Tensor near = ((i - j) >= 0).logical_and((i - j) < width).logical_and(i >= c.rowStart);
      const at::Tensor p = x.p.masked_fill(near.logical_not(), 0.0);  // [head, q, k]
      const at::Tensor d0 = (p * off).sum(-1), d1 = (p * at::clamp_min(10.0 - off, 0.0)).sum(-1);  // [head, n]
      const at::Tensor c0 = (p * (off >= 1).to(at::kDouble)).sum(-2);                                // [head, n]
      // The same arithmetic as the LibTorch path it replaces: fp32 dot products of exact products, p in fp64.
      const double e0 = maxRelErr(got->rowSums[0], d0), e1 = maxRelErr(got->rowSums[1], d1), ec = maxRelErr(got->colSums, c0);
      std::printf("    largest error: distance %.2e, window %.2e, columns %.2e\n", e0, e1, ec);
      EXPECT_LT(e0, 1e-4);
      EXPECT_LT(e1, 1e-4);
      EXPECT_LT(ec, 1e-4);
      EXPECT_EQ(got->rowSums.cpu().slice(2, 0, c.rowStart).abs().sum().item<double>(), 0.0) << "rows before R";
    }
}

TEST(LogitStatsCuda, EntropyAndLogProbEqualFp64OnesOfTheSameLogits) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device in this build/machine";
  if (!probe_detail::probeKernelsBuilt()) GTEST_SKIP() << "built without the CUDA kernels (no nvcc when configured)";
  at::manual_seed(13);
  const int64_t rows = 37, vocab = 50021;  // a vocabulary that is no multiple of 8: the scalar tail
  for (at::ScalarType dt : {at::kBFloat16, at::kHalf}) {
    for (bool unaligned : {false, true}) {
      SCOPED_TRACE(::testing::Message() << (dt == at::kHalf ? "fp16" : "bf16") << (unaligned ? ", rows not 16-byte aligned" : ""));
      at::Tensor z = (at::randn({rows, vocab + 1}) * 3.0);
      z[1][7] = 60.0;                            // a peaked row: H ≈ 1e-20, log Z from log1p
      z[2].narrow(0, 100, 5000).fill_(-INFINITY);  // masked tokens
      z[3][9] = 4.0;
      z[3][10] = 4.0;                            // a tied maximum
      z = z.to(dt).cuda();
      const at::Tensor logits = unaligned ? z.narrow(1, 1, vocab) : z.narrow(1, 0, vocab);  // [rows, vocab]
      at::Tensor target = at::randint(vocab, {rows}, at::kLong);
      target[2] = 0;  // not a masked token (log p = −inf would compare as NaN)
      target = target.cuda();
      const auto got = logitStatsOnDevice(logits, target);
      ASSERT_TRUE(got.has_value());
      // Reference in fp64, free of cancellation itself: with d = l − max and zr = Σ e^d over every token but one
      // maximum, H = log1p(zr) − Σ e^d d / (1 + zr). (−Σ p log p from log_softmax loses the top token's term for
      // the peaked row: its log p = −log1p(4e-20) rounds to 0 next to 60, which left the reference 2 % low, first
      // run on the H100, 2026-12-05.)
      const at::Tensor zd = logits.to(at::kDouble).cpu();
      const auto [top, arg] = zd.max(-1, true);                                               // [rows, 1]
      const at::Tensor d = zd - top;                                                           // [rows, vocab] ≤ 0
      const at::Tensor e = d.exp().scatter(1, arg, 0.0);                                       // the maximum's term left out
      const at::Tensor zr = e.sum(-1);                                                         // [rows]
      const at::Tensor h = at::log1p(zr) - (e * d.masked_fill(d == -INFINITY, 0.0)).sum(-1) / (1.0 + zr);  // [rows]
      const at::Tensor lp = d.gather(1, target.cpu().unsqueeze(1)).squeeze(1) - at::log1p(zr);  // [rows]
      // fp32 sums of ~200 terms a thread and __expf (2 ulp): ~1e-5 relative; a wrong rescale or a lost term is ≫ 1e-4.
      const double eh = maxRelErr(got->entropy, h);
      const double elp = ((got->logProb.to(at::kDouble).cpu() - lp).abs() / (lp.abs() + 1.0)).max().item<double>();
      std::printf("    largest error: entropy %.2e (peaked row %.3e vs %.3e), log p %.2e\n", eh, got->entropy[1].item<double>(),
                  h[1].item<double>(), elp);
      EXPECT_LT(eh, 1e-4);
      EXPECT_LT(elp, 1e-5);
    }
  }
  EXPECT_FALSE(logitStatsOnDevice(at::randn({4, 10}).cuda(), at::zeros({4}, at::kLong).cuda())) << "fp32 logits";
  EXPECT_FALSE(logitStatsOnDevice(at::randn({4, 10}).to(at::kBFloat16), at::zeros({4}, at::kLong))) << "CPU";
}

TEST(FarSumsCuda, DeclinesWhatItIsNotBuiltFor) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device in this build/machine";
  const at::Tensor lse = at::zeros({2, 64}, at::kDouble).cuda();
  auto make = [](int64_t d, at::ScalarType dt, bool cuda) {
    at::Tensor x = at::randn({64, 2, d}).to(dt);
    return cuda ? x.cuda() : x;
  };
  EXPECT_FALSE(farSumsOnDevice(make(96, at::kBFloat16, true), make(96, at::kBFloat16, true), lse, 0.1, 1, 0)) << "d_head 96";
  EXPECT_FALSE(farSumsOnDevice(make(64, at::kFloat, true), make(64, at::kFloat, true), lse, 0.1, 1, 0)) << "fp32";
  EXPECT_FALSE(farSumsOnDevice(make(64, at::kBFloat16, false), make(64, at::kBFloat16, false), lse.cpu(), 0.1, 1, 0)) << "CPU";
  setenv("MECHSCOPE_PROBE_KERNEL", "0", 1);
  EXPECT_FALSE(farSumsOnDevice(make(64, at::kBFloat16, true), make(64, at::kBFloat16, true), lse, 0.1, 1, 0)) << "switched off";
  unsetenv("MECHSCOPE_PROBE_KERNEL");
  if (probe_detail::probeKernelsBuilt()) {
    EXPECT_TRUE(farSumsOnDevice(make(64, at::kBFloat16, true), make(64, at::kBFloat16, true), lse, 0.1, 1, 0)) << "bf16, d_head 64";
  }
}

}  // namespace
