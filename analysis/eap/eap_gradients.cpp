// Node outputs and receiver-input gradients of edge attribution patching (eap_gradients.hpp).
#include "analysis/eap/eap_gradients.hpp"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard / AutoGradMode: not pulled in by ATen.h in LibTorch 2.x

#include <tuple>

#include <fmt/format.h>

#include "analysis/common/final_norm.hpp"
#include "analysis/common/logit_diff.hpp"
#include "core/common/errors.hpp"
#include "core/model/hook_names.hpp"

namespace mechscope::analysis {
namespace {

/// Per-layer slots filled by hooks.
struct Taps {
  std::vector<at::Tensor> residPre, residMid;  // [batch, pos, d_model] detached: ln1 and ln2 inputs
  std::vector<at::Tensor> q, k, v, ln2;        // recorded hook values (detached)
  std::vector<at::Tensor> eq, ek, ev, eln2;    // zero leaves added at those hooks (their .grad() after backward)
  at::Tensor eFinal;                           // zero leaf at the last block's hook_resid_post
  explicit Taps(int L)
      : residPre(L), residMid(L), q(L), k(L), v(L), ln2(L), eq(L), ek(L), ev(L), eln2(L) {}
};

/// A hook that records `t` in slot[layer] and adds a zero leaf (kept in leaf[layer]) so autograd reaches
/// the site without cutting any path through it.
HookFn tapHook(std::vector<at::Tensor>& value, std::vector<at::Tensor>& leaf) {
  return [&value, &leaf](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    const auto l = static_cast<size_t>(hc.layer);
    value[l] = t.detach();
    leaf[l] = at::zeros_like(t).requires_grad_(true);
    return t + leaf[l];
  };
}

/// The gradient of a leaf after backward; Error when autograd did not reach it.
at::Tensor gradOf(const at::Tensor& leaf, const std::string& site) {
  if (!leaf.defined() || !leaf.grad().defined()) throw Error(fmt::format("eap: no gradient reached {}", site));
  return leaf.grad();
}

/// hook_q/k/v of layer `l` at positions [p0, p1) recomputed from per-head copies of its input (ln1 → the
/// head's rows of the projection → qk-norm), and ∂/∂copies of Σ hook·g: the receivers' input gradients
/// [rows, c, n, d_model]. Refuses (Error) when the recomputation does not reproduce the recorded hooks.
std::vector<at::Tensor> pullBackHeads(const HookedTransformer& m, const ReceiverGradients& g, int l, int64_t p0, int64_t c) {
  const ModelConfig& cfg = m.config();
  const LayerWeights& W = m.weights().layers[static_cast<size_t>(l)];
  const size_t li = static_cast<size_t>(l);
  const at::Tensor resid = g.residPre[li].narrow(1, p0, c);  // [rows, c, d_model]
  const int64_t B = resid.size(0), d = cfg.dModel, dh = cfg.dHead;
  at::AutoGradMode grad(true);
  auto copies = [&](int64_t n) { return resid.unsqueeze(2).expand({B, c, n, d}).contiguous().requires_grad_(true); };
  auto project = [&](const at::Tensor& r, const at::Tensor& w, const at::Tensor& b, const at::Tensor& qkNormW, int64_t n) {
    // A split model's block weights come to the activations (the home device).
    at::Tensor y = at::einsum("bpnd,ned->bpne", {applyNorm(m, r, W.ln1W, W.ln1B), w.to(r.device()).view({n, dh, d})});  // [rows, c, n, d_head]
    if (b.defined()) y = y + b.to(r.device()).view({n, dh});
    return cfg.qkNorm && qkNormW.defined() ? applyNorm(m, y, qkNormW, {}) : y;
  };
  const at::Tensor rq = copies(cfg.nHeads), rk = copies(cfg.nKvHeads), rv = copies(cfg.nKvHeads);  // [rows, c, n, d_model]
  const at::Tensor q = project(rq, W.wQ, W.bQ, W.qNormW, cfg.nHeads);
  const at::Tensor k = project(rk, W.wK, W.bK, W.kNormW, cfg.nKvHeads);
  const at::Tensor v = project(rv, W.wV, W.bV, {}, cfg.nKvHeads);
  const double tol = m.dtype() == at::kFloat || m.dtype() == at::kDouble ? 1e-4 : 3e-2;
  for (const auto& [mine, seen, name] : {std::tuple{q, g.q[li], "q"}, std::tuple{k, g.k[li], "k"}, std::tuple{v, g.v[li], "v"}}) {
    const at::Tensor s = seen.narrow(1, p0, c);
    const double scale = std::max(1.0, s.abs().max().item<double>());
    if ((mine.detach() - s).abs().max().item<double>() > tol * scale)
      throw Error(fmt::format("eap: layer {}'s hook_{} is not ln1 → W_{} of resid_pre in this family; edge attribution "
                              "needs the head input's path (docs/metrics.md §12.6)",
                              l, name, name));
  }
  ((q * g.gq[li].narrow(1, p0, c)).sum() + (k * g.gk[li].narrow(1, p0, c)).sum() + (v * g.gv[li].narrow(1, p0, c)).sum()).backward();
  return {rq.grad(), rk.grad(), rv.grad()};
}

/// ∂/∂(MLP input copy) at positions [p0, p1): ln2's input (resid_mid, or resid_pre in a parallel block)
/// pulled back from the gradient at ln2.hook_normalized.
at::Tensor pullBackMlp(const HookedTransformer& m, const ReceiverGradients& g, int l, int64_t p0, int64_t c) {
  const LayerWeights& W = m.weights().layers[static_cast<size_t>(l)];
  const size_t li = static_cast<size_t>(l);
  const at::Tensor& in = m.config().parallelAttnMlp ? g.residPre[li] : g.residMid[li];  // [rows, pos, d_model]
  at::AutoGradMode grad(true);
  const at::Tensor r = in.narrow(1, p0, c).detach().clone().requires_grad_(true);
  (applyNorm(m, r, W.ln2W, W.ln2B) * g.gln2[li].narrow(1, p0, c)).sum().backward();
  return r.grad();
}

/// Hooks that record the node outputs of a run into `out`.
void addRecordHooks(HookSet& hooks, NodeOutputs& out) {
  hooks.add("blocks.0.hook_resid_pre", [&out](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
    out.input = t.detach();
    return std::nullopt;
  });
  hooks.add("blocks.*.attn.hook_z", [&out](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    out.z[static_cast<size_t>(hc.layer)] = t.detach();
    return std::nullopt;
  });
  hooks.add("blocks.*.hook_mlp_out", [&out](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    out.mlp[static_cast<size_t>(hc.layer)] = t.detach();
    return std::nullopt;
  });
}

}  // namespace

LayerReceiverGrads receiverInputGrads(const HookedTransformer& m, const ReceiverGradients& g, int layer, int64_t p0, int64_t p1) {
  const int64_t c = p1 - p0;
  std::vector<at::Tensor> heads = pullBackHeads(m, g, layer, p0, c);
  return {heads[0], heads[1], heads[2], pullBackMlp(m, g, layer, p0, c)};
}

at::Tensor headOutputs(const HookedTransformer& m, int layer, const at::Tensor& z, at::ScalarType dtype) {
  const ModelConfig& c = m.config();
  const at::Tensor wO =
      m.weights().layers[static_cast<size_t>(layer)].wO.to(z.device(), dtype).view({c.dModel, c.nHeads, c.dHead});  // [d_model, head, d_head]
  return at::einsum("rphe,dhe->rphd", {z.to(dtype), wO});
}

NodeOutputs recordNodeOutputs(const HookedTransformer& m, const at::Tensor& tokens, const at::Tensor& correct,
                              const at::Tensor& incorrect, const RunContext* ctx, AttentionPath path) {
  const auto L = static_cast<size_t>(m.config().nLayers);
  NodeOutputs out;
  out.z.resize(L);
  out.mlp.resize(L);
  HookSet hooks;
  addRecordHooks(hooks, out);
  ForwardOptions opts;
  opts.logitsLastOnly = true;
  opts.path = path;
  at::NoGradGuard noGrad;
  const ForwardResult fr = m.forward(tokens, opts, &hooks, ctx);
  out.metric = logitDiff(fr.logits, correct, incorrect).detach();
  return out;
}

ReceiverGradients receiverGradients(const HookedTransformer& m, const at::Tensor& tokens, const at::Tensor& correct,
                                    const at::Tensor& incorrect, const at::Tensor& input, NodeOutputs* record,
                                    const RunContext* ctx, AttentionPath path) {
  const ModelConfig& c = m.config();
  const int L = c.nLayers;
  at::AutoGradMode grad(true);
  Taps taps(L);
  HookSet hooks;
  // Replace the embeddings first (EAP-IG), so every recorded value below is the run's own.
  if (input.defined())
    hooks.add("blocks.0.hook_resid_pre", [&input](const at::Tensor&, const HookContext&) -> std::optional<at::Tensor> { return input; });
  if (record) {
    record->z.assign(static_cast<size_t>(L), {});
    record->mlp.assign(static_cast<size_t>(L), {});
    addRecordHooks(hooks, *record);
  }
  hooks.add("blocks.*.hook_resid_pre", [&taps](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    taps.residPre[static_cast<size_t>(hc.layer)] = t.detach();
    return std::nullopt;
  });
  hooks.add("blocks.*.hook_resid_mid", [&taps](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    taps.residMid[static_cast<size_t>(hc.layer)] = t.detach();
    return std::nullopt;
  });
  hooks.add("blocks.*.attn.hook_q", tapHook(taps.q, taps.eq));
  hooks.add("blocks.*.attn.hook_k", tapHook(taps.k, taps.ek));
  hooks.add("blocks.*.attn.hook_v", tapHook(taps.v, taps.ev));
  hooks.add("blocks.*.ln2.hook_normalized", tapHook(taps.ln2, taps.eln2));
  hooks.add(hook::residPost(L - 1), [&taps](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
    taps.eFinal = at::zeros_like(t).requires_grad_(true);
    return t + taps.eFinal;
  });
  ForwardOptions opts;
  opts.logitsLastOnly = true;
  opts.path = path;
  const ForwardResult fr = m.forward(tokens, opts, &hooks, ctx);
  const at::Tensor ld = logitDiff(fr.logits, correct, incorrect);  // [batch]
  ld.sum().backward();
  if (record) record->metric = ld.detach();

  ReceiverGradients g;
  g.metric = ld.detach();
  g.logits = gradOf(taps.eFinal, hook::residPost(L - 1));
  for (int l = 0; l < L; ++l) {
    const auto li = static_cast<size_t>(l);
    if (ctx) ctx->check();
    g.gq.push_back(gradOf(taps.eq[li], hook::q(l)));
    g.gk.push_back(gradOf(taps.ek[li], hook::k(l)));
    g.gv.push_back(gradOf(taps.ev[li], hook::v(l)));
    g.gln2.push_back(gradOf(taps.eln2[li], hook::name(l, "ln2.hook_normalized")));
  }
  g.residPre = std::move(taps.residPre);
  g.residMid = std::move(taps.residMid);
  g.q = std::move(taps.q);
  g.k = std::move(taps.k);
  g.v = std::move(taps.v);
  return g;
}

}  // namespace mechscope::analysis
