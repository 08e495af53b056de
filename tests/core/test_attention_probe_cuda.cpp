// AttentionProbe on CUDA (skipped without a GPU): bf16 q/k as a real model gives them, both algorithms
// against statistics of the fp64 pattern built from the same (upcast) values. LseFirst takes the row
// normalisers from flash attention where LibTorch ≥ 2.1 has it; TF32 matmuls are exact on bf16 values.
// Moments takes every statistic from flash normalisers of augmented q/k (core/probe/probe_moments.cpp).
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/probe/attention_probe.hpp"

using namespace mechscope;

namespace {

/// max |a − b| / max |b| over the tensor (the statistics here are O(1) sums).
double relErr(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor ad = a.to(at::kDouble).cpu(), bd = b.to(at::kDouble).cpu();
  return (ad - bd).abs().max().item<double>() / std::max(bd.abs().max().item<double>(), 1e-30);
}

/// Column sums, column keys, distance, window and key-set mass within 1e-4 of the reference; counts equal.
void expectRowAndColumnStats(const ProbeResult& got, const ProbeResult& ref) {
  EXPECT_LT(relErr(got.columnSums, ref.columnSums), 1e-4);
  EXPECT_LT(relErr(got.columnKeySums, ref.columnKeySums), 1e-4);
  EXPECT_LT(relErr(got.distance, ref.distance), 1e-4);
  EXPECT_LT(relErr(got.windowed, ref.windowed), 1e-4);
  EXPECT_LT(relErr(got.keySetMass, ref.keySetMass), 1e-4);
  EXPECT_TRUE(got.columnCounts.cpu().equal(ref.columnCounts.cpu()));
}

TEST(ProbeCuda, BothAlgorithmsMatchTheFp64PatternOnBf16Inputs) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device in this build/machine";
  at::manual_seed(7);
  const int64_t n = 1536, heads = 8, kvHeads = 2, d = 128;
  ProbeInputs in;
  in.q = (at::randn({n, heads, d}) * 1.5).to(at::kBFloat16).cuda();  // [pos, head, d_head]
  in.k = at::randn({n, kvHeads, d}).to(at::kBFloat16).cuda();        // [pos, kv_head, d_head]
  in.scale = 1.0 / std::sqrt(static_cast<double>(d));

  // Reference: the fp64 pattern of the same bf16 values, on the CPU.
  const at::Tensor q = in.q.to(at::kDouble).cpu(), k = in.k.to(at::kDouble).cpu().repeat_interleave(heads / kvHeads, 1);
  at::Tensor s = at::matmul(q.permute({1, 0, 2}), k.permute({1, 2, 0})) * in.scale;  // [head, q, k]
  const at::Tensor future = at::arange(n).unsqueeze(0) > at::arange(n).unsqueeze(1);
  const at::Tensor pattern = at::softmax(s.masked_fill(future, -INFINITY), -1);       // [head, q, k]

  ProbeRequest req;
  req.columnSums = true;
  req.columnCounts = true;
  req.columnKeys = {0, 5};
  req.distance = true;
  req.distanceTotal = true;
  req.window = 10;
  req.topK = 1;
  req.keySet = {0, 1, 2, 100};
  const ProbeResult ref = statsFromPattern(pattern, req);
  for (ProbeAlgorithm a : {ProbeAlgorithm::Scan, ProbeAlgorithm::LseFirst}) {
    SCOPED_TRACE(a == ProbeAlgorithm::Scan ? "Scan" : "LseFirst");
    req.algorithm = a;
    const ProbeResult got = probeAttention(in, req, 256, 512);
    EXPECT_EQ(got.algorithm, a);
    if (a == ProbeAlgorithm::LseFirst)
      std::printf("    LseFirst row normalisers from flash attention: %s\n", got.flashLse ? "yes" : "no");
    expectRowAndColumnStats(got, ref);
    EXPECT_LT(relErr(got.topValues, ref.topValues), 1e-4);
  }
  EXPECT_FALSE(at::globalContext().allowTF32CuBLAS()) << "the TF32 switch must be restored";

  // Moments: the same statistics from flash attention's normalisers of the augmented q/k (no top-k).
  req.topK = 0;
  req.algorithm = ProbeAlgorithm::Moments;
  for (int64_t start : {int64_t{0}, n / 3}) {
    SCOPED_TRACE("Moments, queryStart " + std::to_string(start));
    req.queryStart = start;
    const ProbeResult ref2 = statsFromPattern(pattern, req);
    const ProbeResult got = probeAttention(in, req, 256, 512);
    EXPECT_EQ(got.algorithm, ProbeAlgorithm::Moments);
    std::printf("    Moments normalisers from flash attention: %s\n", got.flashLse ? "yes" : "no");
    expectRowAndColumnStats(got, ref2);
    EXPECT_LT(relErr(got.distanceTotal, ref2.distanceTotal), 1e-4);
  }

  // Retrieval's prefill: the last row's argmax alone. Its normaliser comes from key tiles over that row (a fused
  // kernel would compute all n rows), with the same answer.
  ProbeRequest last;
  last.topK = 1;
  last.queryStart = n - 1;
  const ProbeResult lastRef = statsFromPattern(pattern, last);
  const ProbeResult lastGot = probeAttention(in, last, 256, 512);
  EXPECT_FALSE(lastGot.flashLse) << "one row of " << n << " should not run a whole causal kernel";
  EXPECT_LT(relErr(lastGot.topValues, lastRef.topValues), 1e-4);
  const at::Tensor idx = lastGot.topIndices.select(1, n - 1).cpu();  // [head, 1]: the last row's argmax
  EXPECT_LT(relErr(pattern.select(1, n - 1).gather(1, idx), lastRef.topValues.select(1, n - 1)), 1e-4) << "argmax points at the top value";
}

}  // namespace
