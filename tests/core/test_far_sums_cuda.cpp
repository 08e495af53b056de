// The probe's far-sums kernel (core/probe/far_sums_kernel.cu, skipped without a GPU or without nvcc at configure time)
// against fp64 sums of the same bf16/fp16 values on the CPU: every row sum T_i = Σ_{j ≤ i−a} p_ij (rows i ≥ R) and
// column sum C_j = Σ_{i ≥ max(j+a, R)} p_ij. Sizes leave partial key blocks (128 keys) and query tiles (64 rows);
// one case reads q and k through strided views, as a fused qkv projection gives them.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/probe/far_sums.hpp"

using namespace mechscope;
using probe_detail::farSumsOnDevice;

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

void checkCase(const Case& c, at::ScalarType dtype) {
  SCOPED_TRACE(::testing::Message() << "n " << c.n << " heads " << c.heads << "/" << c.kvHeads << " d " << c.d << " shift " << c.shift
                                    << " R " << c.rowStart << (c.strided ? " strided" : "") << (dtype == at::kHalf ? " fp16" : " bf16"));
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
  at::Tensor q = (at::randn({c.n, c.heads, c.d}) * 1.5).to(dtype).cuda();  // [pos, head, d_head]
  at::Tensor k = at::randn({c.n, c.kvHeads, c.d}).to(dtype).cuda();          // [pos, kv_head, d_head]
  if (c.strided) {  // the same values inside wider rows: strides n·(d + 64)… as a slice of a fused projection
    at::Tensor qw = at::zeros({c.n, c.heads, c.d + 64}, q.options()), kw = at::zeros({c.n, c.kvHeads, c.d + 64}, k.options());
    qw.narrow(2, 0, c.d).copy_(q);
    kw.narrow(2, 0, c.d).copy_(k);
    q = qw.narrow(2, 0, c.d);
    k = kw.narrow(2, 0, c.d);
    ASSERT_FALSE(q.is_contiguous());
  }
  // Reference: fp64 scores of the same values, causal softmax normalisers, the far pairs' sums.
  const at::Tensor qd = q.to(at::kDouble).cpu(), kd = k.to(at::kDouble).cpu().repeat_interleave(c.heads / c.kvHeads, 1);
  const at::Tensor s = at::matmul(qd.permute({1, 0, 2}), kd.permute({1, 2, 0})) * scale;  // [head, q, k]
  const at::Tensor i = at::arange(c.n, at::kLong).unsqueeze(1), j = at::arange(c.n, at::kLong).unsqueeze(0);
  const at::Tensor lse = at::logsumexp(s.masked_fill(j > i, -INFINITY), -1);  // [head, n]
  const at::Tensor far = ((i - j) >= c.shift).logical_and(i >= c.rowStart);  // [q, k]
  const at::Tensor p = (s - lse.unsqueeze(-1)).exp().masked_fill(far.logical_not(), 0.0);  // [head, q, k]
  const at::Tensor rowRef = p.sum(-1), colRef = p.sum(-2);                                 // [head, n]

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
  if (!probe_detail::farSumsKernelBuilt()) GTEST_SKIP() << "built without the probe's CUDA kernels (no nvcc when configured)";
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
  if (probe_detail::farSumsKernelBuilt()) {
    EXPECT_TRUE(farSumsOnDevice(make(64, at::kBFloat16, true), make(64, at::kBFloat16, true), lse, 0.1, 1, 0)) << "bf16, d_head 64";
  }
}

}  // namespace
