// Tiled attention with a recomputing backward (recomputed_attention.hpp).
#include "core/model/recomputed_attention.hpp"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard / AutoGradMode: not pulled in by ATen.h in LibTorch 2.x
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <algorithm>
#include <limits>
#include <string>

namespace mechscope {
namespace {

using torch::autograd::variable_list;

/// Keys the rows [r0, r1) can see: every key, or (causal, no window, no padding) those before past + r1.
int64_t keysFor(const RecomputedAttention& s, int64_t nKeys, int64_t r1) {
  return s.keysUpToRow ? std::min(nKeys, s.past + r1) : nKeys;
}

/// Row log-sum-exp of scores [batch, head, t, keys] fp32, with the sink column when `sinks` [head] is given
/// → [batch, head, t]. A fully masked row (−inf) becomes +inf, so exp(S − lse) is 0 there, not NaN.
at::Tensor rowLogSumExp(const at::Tensor& scores, const at::Tensor& sinks) {
  at::Tensor lse = scores.logsumexp(-1);  // [batch, head, t]
  if (sinks.defined()) lse = at::logaddexp(lse, sinks.to(lse.options()).view({1, -1, 1}).expand_as(lse));
  return lse.masked_fill(lse == -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity());
}

/// Query heads grouped by their kv head, for products with keys/values: x [batch, head, t, c] →
/// [batch·kv_head, rep·t, c].
at::Tensor byKvHead(const at::Tensor& x, int64_t kvHeads) {
  const int64_t B = x.size(0), H = x.size(1), t = x.size(2), c = x.size(3);
  return x.reshape({B * kvHeads, (H / kvHeads) * t, c});
}

/// Per-kv-head rows of keys/values [batch, kv_head, n, d] → [batch·kv_head, n, d].
at::Tensor flatKv(const at::Tensor& x) { return x.reshape({x.size(0) * x.size(1), x.size(2), x.size(3)}); }

/// The backward of one recomputedAttention call: gradients for (qh, kh, vh).
struct RecomputedAttentionBackward : torch::autograd::Node {
  RecomputedAttention spec;
  at::Tensor q, k, v;  // [batch, head | kv_head, pos, d_head], contiguous, detached
  at::Tensor z;        // [batch, pos, head, d_head] the forward's output (detached alias)
  at::Tensor lse;      // [batch, head, pos] in the scores' type

  std::string name() const override { return "RecomputedAttentionBackward"; }

  variable_list apply(variable_list&& grads) override {
    const at::Tensor& dz = grads.at(0);  // [batch, pos, head, d_head]
    if (!dz.defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    at::NoGradGuard noGrad;
    const int64_t P = q.size(2), N = k.size(2), Hkv = k.size(1);
    const at::ScalarType wt = lse.scalar_type();                                  // the scores' type (fp32, fp64 for fp64 runs)
    const at::Tensor dO = dz.to(wt).permute({0, 2, 1, 3}).contiguous();           // [batch, head, pos, d_head]
    const at::Tensor D = (dO * z.to(wt).permute({0, 2, 1, 3})).sum(-1);           // [batch, head, pos] rowsum(dO ∘ O)
    const at::Tensor vf = v.to(wt);                                               // [batch, kv_head, key, d_head]
    at::Tensor dq = at::empty(q.sizes(), q.options());                            // [batch, head, pos, d_head]
    at::Tensor dk = at::zeros(k.sizes(), k.options().dtype(wt));                  // [batch, kv_head, key, d_head]
    at::Tensor dv = at::zeros(v.sizes(), v.options().dtype(wt));                  // [batch, kv_head, key, d_head]
    for (int64_t r0 = 0; r0 < P; r0 += spec.tile) {
      const int64_t t = std::min(spec.tile, P - r0), kEnd = keysFor(spec, N, r0 + t);
      const at::Tensor qt = q.narrow(2, r0, t).detach().requires_grad_(true);    // [batch, head, t, d_head]
      const at::Tensor kt = k.narrow(2, 0, kEnd).detach().requires_grad_(true);  // [batch, kv_head, keys, d_head]
      at::Tensor s;                                                              // [batch, head, t, keys] fp32
      {
        at::AutoGradMode on(true);
        s = spec.scores(qt, kt, r0);
      }
      const at::Tensor p = (s.detach() - lse.narrow(2, r0, t).unsqueeze(-1)).exp();  // [batch, head, t, keys]
      const at::Tensor dOt = dO.narrow(2, r0, t);                                     // [batch, head, t, d_head]
      const at::Tensor vt = flatKv(vf.narrow(2, 0, kEnd));                            // [batch·kv, keys, d_head]
      const int64_t B = p.size(0), H = p.size(1);
      const at::Tensor dP = at::bmm(byKvHead(dOt, Hkv), vt.transpose(1, 2)).view({B, H, t, kEnd});  // [batch, head, t, keys]
      const at::Tensor dS = p * (dP - D.narrow(2, r0, t).unsqueeze(-1));                              // ∂L/∂scores
      dv.narrow(2, 0, kEnd) += at::bmm(byKvHead(p, Hkv).transpose(1, 2), byKvHead(dOt, Hkv)).view({B, Hkv, kEnd, -1});
      const variable_list g = torch::autograd::grad({s}, {qt, kt}, {dS}, false, false, true);
      dq.narrow(2, r0, t).copy_(g[0].defined() ? g[0] : at::zeros_like(qt));
      if (g[1].defined()) dk.narrow(2, 0, kEnd) += g[1].to(wt);
    }
    return {dq, dk.to(k.scalar_type()), dv.to(v.scalar_type())};
  }

  void release_variables() override {
    q.reset();
    k.reset();
    v.reset();
    z.reset();
    lse.reset();
  }
};

}  // namespace

at::Tensor recomputedAttention(const at::Tensor& qh, const at::Tensor& kh, const at::Tensor& vh, const RecomputedAttention& spec) {
  const bool needGrad = at::GradMode::is_enabled() && (qh.requires_grad() || kh.requires_grad() || vh.requires_grad());
  at::NoGradGuard noGrad;
  const int64_t B = qh.size(0), H = qh.size(1), P = qh.size(2), dh = qh.size(3), N = kh.size(2), Hkv = kh.size(1);
  const at::Tensor q = qh.detach().contiguous();  // [batch, head, pos, d_head]
  const at::Tensor k = kh.detach().contiguous();  // [batch, kv_head, key, d_head]
  const at::Tensor v = vh.detach().contiguous();  // [batch, kv_head, key, d_head]
  at::Tensor z = at::empty({B, P, H, dh}, q.options().dtype(spec.dtype));       // [batch, pos, head, d_head]
  at::Tensor lse;  // [batch, head, pos] in the scores' type
  if (P == 0) return z;
  for (int64_t r0 = 0; r0 < P; r0 += spec.tile) {
    const int64_t t = std::min(spec.tile, P - r0), kEnd = keysFor(spec, N, r0 + t);
    const at::Tensor s = spec.scores(q.narrow(2, r0, t), k.narrow(2, 0, kEnd), r0);  // [batch, head, t, keys] fp32
    const at::Tensor l = rowLogSumExp(s, spec.sinks);                               // [batch, head, t]
    if (!lse.defined()) lse = at::empty({B, H, P}, l.options());
    const at::Tensor p = (s - l.unsqueeze(-1)).exp_().to(spec.dtype);               // [batch, head, t, keys]
    const at::Tensor o = at::bmm(byKvHead(p, Hkv), flatKv(v.narrow(2, 0, kEnd))).view({B, H, t, dh});
    z.narrow(1, r0, t).copy_(o.permute({0, 2, 1, 3}));
    lse.narrow(2, r0, t).copy_(l);
  }
  if (!needGrad) return z;
  auto node = std::shared_ptr<RecomputedAttentionBackward>(new RecomputedAttentionBackward(), torch::autograd::deleteNode);
  node->spec = spec;
  node->q = q;
  node->k = k;
  node->v = v;
  node->z = z.detach();
  node->lse = lse;
  node->set_next_edges(torch::autograd::collect_next_edges(qh, kh, vh));
  torch::autograd::set_history(z, node);
  return z;
}

}  // namespace mechscope
