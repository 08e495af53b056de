#include "core/model/moe_mlp.hpp"

#include <ATen/ATen.h>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope {

namespace {

at::Tensor moeHook(const MoeSite& site, const at::Tensor& t, const std::string& name) {
  return site.hp(t, name, site.layer);
}

at::Tensor moeLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return b.defined() ? at::linear(x, w, b) : at::linear(x, w);
}

/// One expert (or the shared expert) on its tokens x [n, d_model] → [n, d_model].
at::Tensor runExpert(const ModelConfig& c, const ExpertWeights& e, const at::Tensor& x) {
  at::Tensor gate, up;  // [n, d_expert]
  if (e.wGateUp.defined()) {
    at::Tensor gu = moeLinear(x, e.wGateUp, e.bGateUp);  // [n, 2 · d_expert], gate and up interleaved
    gate = gu.slice(1, 0, gu.size(1), 2);
    up = gu.slice(1, 1, gu.size(1), 2);
  } else {
    gate = moeLinear(x, e.wGate, e.bGate);
    up = moeLinear(x, e.wIn, e.bIn);
  }
  at::Tensor h;  // [n, d_expert]
  if (c.moe.activation == ExpertActivation::ClampedSwiglu) {
    const double lim = c.moe.swigluLimit;
    gate = gate.clamp_max(lim);
    up = up.clamp(-lim, lim);
    h = (up + 1.0) * (gate * at::sigmoid(gate * c.moe.swigluAlpha));
  } else {
    h = applyActivation(c.activation, gate) * up;
  }
  return moeLinear(h, e.wOut, e.bOut);
}

/// The routing of T tokens: weights [T, k] in the routing dtype and expert indices [T, k] int64.
struct Routing {
  at::Tensor weights, indices;
};

Routing route(const MoeConfig& m, const at::Tensor& logits, at::ScalarType routeType) {
  at::Tensor lf = logits.to(routeType);  // [T, n_experts]
  Routing r;
  if (m.order == RouterOrder::TopKThenSoftmax) {
    auto [values, indices] = at::topk(lf, m.topK, -1);  // [T, k]
    r.weights = at::softmax(values, -1);
    r.indices = indices;
  } else {
    auto [values, indices] = at::topk(at::softmax(lf, -1), m.topK, -1);  // [T, k]
    r.weights = m.normTopK ? values / values.sum(-1, true) : values;
    r.indices = indices;
  }
  return r;
}

}  // namespace

at::Tensor moeMlp(const ModelConfig& c, const MoeWeights& w, const MoeSite& site, const at::Tensor& x) {
  const int64_t B = x.size(0), P = x.size(1), D = x.size(2), T = B * P, E = c.moe.nExperts, K = c.moe.topK;
  const auto& nm = site.names;
  // Routing in fp32 (fp64 for reference runs), as HF's softmax(router_logits, dtype=float).
  const at::ScalarType routeType = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor xf = x.reshape({T, D});                                                       // [token, d_model]
  at::Tensor logits = moeHook(site, moeLinear(xf, w.wRouter, w.bRouter).view({B, P, E}), nm.routerLogits);  // [batch, pos, expert]
  Routing r = route(c.moe, logits.reshape({T, E}), routeType);
  at::Tensor weights = moeHook(site, r.weights.view({B, P, K}), nm.expertWeights).reshape({T, K});     // [token, k]
  at::Tensor indices = moeHook(site, r.indices.view({B, P, K}), nm.expertIndices).reshape({T, K});     // [token, k]
  if (indices.scalar_type() != at::kLong) indices = indices.to(at::kLong);

  const bool perExpertHooked = site.hp.on(nm.expertOut);
  at::Tensor out = at::zeros({T, D}, x.options());                          // [token, d_model]
  at::Tensor perExpert = perExpertHooked ? at::zeros({T, E, D}, x.options()) : at::Tensor();  // [token, expert, d_model]
  for (int64_t e = 0; e < E; ++e) {
    at::Tensor hit = at::nonzero(indices == e);  // [n, 2]: (token, slot) pairs routed to e
    if (hit.size(0) == 0) continue;
    at::Tensor tok = hit.select(1, 0), slot = hit.select(1, 1);                             // [n]
    at::Tensor y = runExpert(c, w.experts[static_cast<size_t>(e)], xf.index_select(0, tok));  // [n, d_model]
    at::Tensor we = weights.index({tok, slot}).unsqueeze(1);                                // [n, 1]
    at::Tensor contrib = (y.to(routeType) * we).to(x.scalar_type());                        // [n, d_model]
    if (perExpertHooked) perExpert.select(1, e).index_add_(0, tok, contrib);
    out.index_add_(0, tok, contrib);
  }
  if (perExpertHooked) {
    // Changed by the hook: their sum. Only read: the plain path's sum (`out`), as if unhooked.
    const ShownToHook shown = showToHook(site.hp, perExpert.view({B, P, E, D}), nm.expertOut, site.layer);  // [batch, pos, expert, d_model]
    if (shown.changed) out = shown.value.sum(2).reshape({T, D});
  }
  at::Tensor result = out.view({B, P, D});
  if (c.moe.dShared > 0) {
    at::Tensor shared = runExpert(c, w.shared, xf);  // [token, d_model]
    if (c.moe.sharedGate) shared = at::sigmoid(moeLinear(xf, w.wSharedGate, {})) * shared;
    result = result + moeHook(site, shared.view({B, P, D}), nm.sharedExpertOut);
  }
  return result;
}

}  // namespace mechscope
