// AttentionProbe memory contract: at n = 16384 the probe's CPU allocations stay O(tile² + n), measured
// with a counting CPU allocator, far below the 2 GiB a [2, n, n] fp32 pattern takes.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/probe/attention_probe.hpp"
#include "core/probe/cpu_memory_meter.hpp"
#include "core/probe/probe_tiles.hpp"

using namespace mechscope;

namespace {

TEST(AttentionProbeMemory, LongContextWorkspaceIsTiledNotQuadratic) {
  const int64_t n = 16384, heads = 2, dHead = 16, tail = 256;
  at::manual_seed(42);
  ProbeInputs in;
  in.q = at::randn({n, heads, dHead});  // [pos, head, d_head]
  in.k = at::randn({n, heads, dHead});  // [pos, head, d_head]
  in.scale = 1.0 / std::sqrt(static_cast<double>(dHead));
  ProbeRequest req;
  req.columnSums = true;
  req.columnCounts = true;
  req.topK = 1;
  req.distance = true;
  req.window = 10;
  req.entropy = true;

  const int64_t patternBytes = heads * n * n * 4;
  const int64_t contract = probeWorkspaceBytes(heads, heads, dHead, n, n, req);
  EXPECT_LT(contract, patternBytes / 16) << "the contract itself must be far below O(n²)";

  ProbeResult r;
  int64_t peak = 0;
  {
    CpuMemoryMeter meter;
    r = probeAttention(in, req);
    peak = meter.peakBytes();
  }
  RecordProperty("peak_bytes", std::to_string(peak));
  RecordProperty("contract_bytes", std::to_string(contract));
  EXPECT_GT(peak, 0) << "the meter saw no allocation";
  EXPECT_LE(peak, contract) << "measured peak " << peak << " B above probeWorkspaceBytes " << contract << " B";
  EXPECT_LT(peak, patternBytes / 16) << "peak " << peak << " B vs pattern " << patternBytes << " B";

  // Numbers, not only memory: column counts are exact, and the last rows equal the materialised rows.
  const at::Tensor expectCounts = (n - 1) - at::arange(n, at::kLong);  // rows i > j
  EXPECT_TRUE(r.columnCounts.equal(expectCounts));
  // Σ_j columnSums[h, j] = Σ_i (1 − p_ii): every row's mass except its diagonal.
  const at::Tensor qt = in.q.narrow(0, n - tail, tail).permute({1, 0, 2});  // [head, tail, d]
  at::Tensor s = at::matmul(qt, in.k.permute({1, 2, 0})) * in.scale;       // [head, tail, n]
  const at::Tensor future = at::arange(n).unsqueeze(0) > (at::arange(tail).unsqueeze(1) + (n - tail));
  const at::Tensor p = at::softmax(s.masked_fill(future, -INFINITY), -1);   // [head, tail, n]
  const at::Tensor ref = (p * (at::arange(tail).unsqueeze(1) + (n - tail) - at::arange(n).unsqueeze(0))).sum(-1);
  const at::Tensor got = r.distance.narrow(1, n - tail, tail);
  EXPECT_LE(((got - ref).abs() / ref.abs()).max().item<double>(), 1e-5);
  const at::Tensor refEnt = -at::xlogy(p, p).sum(-1);
  EXPECT_LE(((r.entropy.narrow(1, n - tail, tail) - refEnt).abs() / refEnt).max().item<double>(), 1e-5);
  const at::Tensor refMax = std::get<0>(p.max(-1));
  EXPECT_LE(((r.topValues.narrow(1, n - tail, tail).squeeze(-1) - refMax).abs() / refMax).max().item<double>(), 1e-5);
}

TEST(AttentionProbeMemory, MeterCountsAllocationsAndFrees) {
  CpuMemoryMeter meter;
  const int64_t before = meter.currentBytes();
  {
    at::Tensor t = at::empty({1 << 20}, at::kFloat);  // 4 MiB
    EXPECT_GE(meter.currentBytes() - before, 4 << 20);
  }
  EXPECT_EQ(meter.currentBytes(), before);
  EXPECT_GE(meter.peakBytes(), 4 << 20);
  meter.resetPeak();
  EXPECT_EQ(meter.peakBytes(), meter.currentBytes());
}

}  // namespace
