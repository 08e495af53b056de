// recomputedAttention (core/model/recomputed_attention.hpp): its output and its gradients with respect to q, k
// and v equal autograd through the explicit attention math (the whole [query, key] softmax kept), in fp64,
// for causal, cached-prefix, windowed, padded, grouped-query, learned-sink and soft-capped scores, with tiles
// that do not divide the rows. fp64 sums of a few dozen O(1) products: agreement to 1e-10 leaves room for
// nothing but rounding, while any wrong term (a missing rowsum, a mask, the sink in the normaliser) is O(1e-2).
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "core/model/recomputed_attention.hpp"

using namespace mechscope;

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

/// One case: shapes, which keys each query sees, and the score transform.
struct AttnCase {
  int64_t batch = 2, heads = 4, kvHeads = 2, queries = 37, past = 0, dHead = 8, tile = 8;
  int64_t window = 0;       ///< > 0: key j visible to query i only if i − j < window
  bool padFirstRows = false;  ///< batch 1's first 3 keys are padding (its first 3 query rows see nothing)
  double softcap = 0;       ///< > 0: scores → cap · tanh(scores / cap) before the mask
  bool sinks = false;
};

/// [queries, keys] bool: key j visible to query row r (absolute position past + r) in batch b.
at::Tensor visible(const AttnCase& c, int64_t b) {
  const int64_t n = c.past + c.queries;
  const at::Tensor i = at::arange(c.past, n, at::kLong).unsqueeze(1), j = at::arange(0, n, at::kLong).unsqueeze(0);
  at::Tensor v = j <= i;
  if (c.window > 0) v = v.logical_and(i - j < c.window);
  if (c.padFirstRows && b == 1) v = v.logical_and(j >= 3).logical_and(i >= 3);
  return v;
}

/// Scores [batch, head, t, keys] of rows [r0, r0 + t): scale · q·kᵀ, soft-capped, −inf where not visible.
at::Tensor caseScores(const AttnCase& c, const at::Tensor& qTile, const at::Tensor& keys, int64_t r0) {
  const int64_t rep = c.heads / c.kvHeads, t = qTile.size(2), n = keys.size(2);
  at::Tensor kr = keys.repeat_interleave(rep, 1);  // [batch, head, keys, d_head]
  at::Tensor s = at::matmul(qTile, kr.transpose(2, 3)) / std::sqrt(static_cast<double>(c.dHead));
  if (c.softcap > 0) s = at::tanh(s / c.softcap) * c.softcap;
  std::vector<at::Tensor> perBatch;
  for (int64_t b = 0; b < c.batch; ++b) perBatch.push_back(visible(c, b));
  at::Tensor mask = at::stack(perBatch).narrow(1, r0, t).narrow(2, 0, n).unsqueeze(1).to(qTile.device());  // [batch, 1, t, keys]
  return s.masked_fill(mask.logical_not(), kNegInf);
}

void checkCase(const AttnCase& c, at::Device device = at::kCPU) {
  const at::TensorOptions o = at::TensorOptions().dtype(at::kDouble).device(device);
  at::manual_seed(7);
  const int64_t n = c.past + c.queries;
  const at::Tensor q0 = at::randn({c.batch, c.heads, c.queries, c.dHead}, o);  // [batch, head, query, d_head]
  const at::Tensor k0 = at::randn({c.batch, c.kvHeads, n, c.dHead}, o);        // [batch, kv_head, key, d_head]
  const at::Tensor v0 = at::randn({c.batch, c.kvHeads, n, c.dHead}, o);
  const at::Tensor sinks = c.sinks ? at::randn({c.heads}, o) : at::Tensor();
  const at::Tensor dz = at::randn({c.batch, c.queries, c.heads, c.dHead}, o);  // upstream gradient

  // Reference: the explicit softmax over every key (plus the sink column), autograd keeps it all.
  at::AutoGradMode grad(true);
  const at::Tensor q1 = q0.clone().requires_grad_(true), k1 = k0.clone().requires_grad_(true), v1 = v0.clone().requires_grad_(true);
  at::Tensor s = caseScores(c, q1, k1, 0);  // [batch, head, query, key]
  if (c.sinks) s = at::cat({s, sinks.view({1, -1, 1, 1}).expand({c.batch, c.heads, c.queries, 1})}, -1);
  at::Tensor p = at::nan_to_num(at::softmax(s, -1), 0.0);
  if (c.sinks) p = p.narrow(-1, 0, n);
  const at::Tensor zRef = at::matmul(p, v1.repeat_interleave(c.heads / c.kvHeads, 1)).permute({0, 2, 1, 3});  // [batch, query, head, d_head]
  (zRef * dz).sum().backward();

  const at::Tensor q2 = q0.clone().requires_grad_(true), k2 = k0.clone().requires_grad_(true), v2 = v0.clone().requires_grad_(true);
  RecomputedAttention spec;
  spec.scores = [c](const at::Tensor& qTile, const at::Tensor& keys, int64_t r0) { return caseScores(c, qTile, keys, r0); };
  spec.tile = c.tile;
  spec.keysUpToRow = c.window == 0 && !c.padFirstRows;
  spec.past = c.past;
  spec.dtype = at::kDouble;
  spec.sinks = sinks;
  const at::Tensor z = recomputedAttention(q2, k2, v2, spec);
  ASSERT_TRUE(z.requires_grad());
  (z * dz).sum().backward();

  EXPECT_LE((z.detach() - zRef.detach()).abs().max().item<double>(), 1e-10);
  EXPECT_LE((q2.grad() - q1.grad()).abs().max().item<double>(), 1e-10);
  EXPECT_LE((k2.grad() - k1.grad()).abs().max().item<double>(), 1e-10);
  EXPECT_LE((v2.grad() - v1.grad()).abs().max().item<double>(), 1e-10);
  // The gradients are far from zero: the comparison above could fail.
  EXPECT_GT(q1.grad().abs().max().item<double>(), 0.05);
  EXPECT_GT(k1.grad().abs().max().item<double>(), 0.05);
}

TEST(RecomputedAttention, CausalGroupedQueries) { checkCase({}); }

TEST(RecomputedAttention, CachedPrefix) {
  AttnCase c;
  c.past = 11;
  checkCase(c);
}

TEST(RecomputedAttention, SlidingWindow) {
  AttnCase c;
  c.window = 5;
  checkCase(c);
}

TEST(RecomputedAttention, PaddedRowsGiveZero) {
  AttnCase c;
  c.padFirstRows = true;
  checkCase(c);
}

TEST(RecomputedAttention, SoftCappedScores) {
  AttnCase c;
  c.softcap = 0.7;  // below typical |score| (~1–3), so the cap bends them
  checkCase(c);
}

TEST(RecomputedAttention, LearnedSinks) {
  AttnCase c;
  c.sinks = true;
  c.kvHeads = 1;
  c.tile = 5;
  checkCase(c);
}

// The same cases on a CUDA device (the GPU box; skipped without CUDA): the node's tiles, bmm products and the
// local autograd pass run there, in fp64, against the explicit softmax on the same device.
TEST(RecomputedAttentionCuda, MatchesTheExplicitSoftmaxOnCuda) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device in this build/machine";
  AttnCase windowed, capped, sinks;
  windowed.window = 5;
  capped.softcap = 0.7;
  sinks.sinks = true;
  for (const AttnCase& c : {AttnCase{}, windowed, capped, sinks}) checkCase(c, at::Device(at::kCUDA));
}

TEST(RecomputedAttention, NoGradientWithoutGradMode) {
  const at::Tensor q = at::randn({1, 2, 6, 4}).requires_grad_(true), k = at::randn({1, 2, 6, 4}), v = at::randn({1, 2, 6, 4});
  AttnCase c;
  c.batch = 1;
  c.heads = c.kvHeads = 2;
  c.queries = 6;
  c.dHead = 4;
  RecomputedAttention spec;
  spec.scores = [c](const at::Tensor& qTile, const at::Tensor& keys, int64_t r0) {
    return caseScores(c, qTile.to(at::kDouble), keys.to(at::kDouble), r0).to(at::kFloat);
  };
  spec.tile = 4;
  at::NoGradGuard off;
  EXPECT_FALSE(recomputedAttention(q, k, v, spec).requires_grad());
}

}  // namespace
