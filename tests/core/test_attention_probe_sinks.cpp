// AttentionProbe with learned sinks (gpt-oss): each head's sink logit joins every row's normaliser as a
// key without value. Every statistic must equal statsFromPattern of the explicit pattern built here with
// plain at:: ops the way Hugging Face builds it: scores with the sink as one more column, softmax, column
// dropped (rows then sum to 1 − p(sink)).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/probe/attention_probe.hpp"

using namespace mechscope;

namespace {

/// [head, query, key] fp64 probabilities over the keys after the sink column is dropped.
at::Tensor sinkPattern(const ProbeInputs& in) {
  const at::Tensor q = in.q.to(at::kDouble), k = in.k.to(at::kDouble);  // [pos, head, d]
  const int64_t heads = q.size(1), group = heads / k.size(1), nq = q.size(0), nk = k.size(0);
  at::Tensor s = at::matmul(q.permute({1, 0, 2}), k.repeat_interleave(group, 1).permute({1, 2, 0})) * in.scale;  // [head, q, k]
  const at::Tensor i = at::arange(nq, at::kLong).unsqueeze(1) + in.queryOffset;
  const at::Tensor j = at::arange(nk, at::kLong).unsqueeze(0);
  at::Tensor mask = j > i;
  if (in.slidingWindow > 0) mask = mask.logical_or(i - j >= in.slidingWindow);
  if (in.keyPadding.defined()) mask = mask.logical_or(in.keyPadding.unsqueeze(0));
  s = s.masked_fill(mask.unsqueeze(0), -INFINITY);
  const at::Tensor sink = in.sinks.to(at::kDouble).view({heads, 1, 1}).expand({heads, nq, 1});
  at::Tensor p = at::softmax(at::cat({s, sink}, -1), -1).narrow(-1, 0, nk);
  // A row without any visible key has no attention at all (the probe's empty-row convention).
  return p.masked_fill(mask.all(1).unsqueeze(0).unsqueeze(-1), 0.0);
}

void expectNear(const at::Tensor& got, const at::Tensor& ref, const std::string& what) {
  ASSERT_TRUE(got.defined()) << what;
  ASSERT_EQ(got.sizes(), ref.sizes()) << what;
  const at::Tensor a = got.to(at::kDouble).cpu(), b = ref.to(at::kDouble).cpu();
  // fp32 probe vs the fp64 pattern: scores are d = 32 products of |q·k|·scale ≲ 6, so each p is within
  // ~2·γ_32·6 + n·u ≈ 3e-5 relative (Higham 3.5); 1e-4 leaves room, with a floor for zero entries.
  const double floor = 1e-7 * b.abs().max().item<double>();
  const double worst = ((a - b).abs() - (b.abs() * 1e-4 + floor)).max().item<double>();
  EXPECT_LE(worst, 0.0) << what;
}

TEST(AttentionProbeSinks, EveryStatisticMatchesTheExplicitSinkPattern) {
  struct Case {
    int64_t nq, nk, offset, window, padded;
  };
  for (const Case& c : {Case{200, 200, 0, 0, 0}, Case{200, 200, 0, 37, 0}, Case{50, 50, 0, 0, 6}, Case{5, 120, 115, 0, 0}}) {
    SCOPED_TRACE(fmt::format("nq {} nk {} offset {} window {} padded {}", c.nq, c.nk, c.offset, c.window, c.padded));
    at::manual_seed(7);
    ProbeInputs in;
    in.q = at::randn({c.nq, 4, 32});  // [pos_q, head, d_head]
    in.k = at::randn({c.nk, 2, 32});  // [pos_k, kv_head, d_head]
    in.scale = 1.0 / std::sqrt(32.0);
    in.queryOffset = c.offset;
    in.slidingWindow = c.window;
    if (c.padded > 0) {
      in.keyPadding = at::zeros({c.nk}, at::kBool);
      in.keyPadding.narrow(0, 0, c.padded).fill_(true);
    }
    in.sinks = at::tensor({2.5, -1.0, 0.0, 4.0}, at::kFloat);  // a heavy sink on head 3
    const at::Tensor pattern = sinkPattern(in);
    ProbeRequest req;
    req.columnSums = true;
    req.topK = 2;
    req.distance = true;
    req.window = 10;
    req.entropy = true;
    req.keySet = {0, 3, 17};
    req.columnKeys = {0, 1, c.nk - 1};
    const ProbeResult ref = statsFromPattern(pattern, req, c.offset);
    for (ProbeAlgorithm a : {ProbeAlgorithm::Scan, ProbeAlgorithm::LseFirst}) {
      SCOPED_TRACE(a == ProbeAlgorithm::Scan ? "Scan" : "LseFirst");
      ProbeRequest r = req;
      r.algorithm = a;
      if (a == ProbeAlgorithm::LseFirst) r.entropy = false;
      const ProbeResult got = probeAttention(in, r, 16, 48);
      expectNear(got.columnSums, ref.columnSums, "columnSums");
      expectNear(got.columnKeySums, ref.columnKeySums, "columnKeySums");
      expectNear(got.distance, ref.distance, "distance");
      expectNear(got.windowed, ref.windowed, "windowed");
      expectNear(got.keySetMass, ref.keySetMass, "keySetMass");
      expectNear(got.topValues, ref.topValues, "topValues");
      if (r.entropy) expectNear(got.entropy, ref.entropy, "entropy");
    }
  }
}

TEST(AttentionProbeSinks, SinksTakeMassAndAreChecked) {
  at::manual_seed(3);
  ProbeInputs in;
  in.q = at::randn({64, 4, 16});
  in.k = at::randn({64, 4, 16});
  in.scale = 0.25;
  ProbeRequest req;
  req.topK = 1;
  req.columnSums = true;
  req.bandMin = 0;  // every row's whole mass, the diagonal included
  const ProbeResult plain = probeAttention(in, req, 16, 16);
  in.sinks = at::full({4}, 3.0);
  const ProbeResult sunk = probeAttention(in, req, 16, 16);
  // Row masses: 64 rows of 1 without sinks; strictly less with them (the sink keeps e^3 / (e^3 + Σ e^s)).
  EXPECT_NEAR(plain.columnSums.sum().item<double>(), 4 * 64, 1e-3);
  EXPECT_LT(sunk.columnSums.sum().item<double>(), 4 * 64 - 10);
  EXPECT_LT(sunk.topValues.max().item<double>(), plain.topValues.max().item<double>());
  in.sinks = at::zeros({3});
  EXPECT_THROW((void)probeAttention(in, req, 16, 16), InputError);
}

}  // namespace
