// Exact edge patching and the circuit faithfulness curve (edge_patching.hpp).
#include "analysis/eap/edge_patching.hpp"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard / AutoGradMode: not pulled in by ATen.h in LibTorch 2.x

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include <fmt/format.h>

#include "analysis/common/final_norm.hpp"
#include "analysis/common/logit_diff.hpp"
#include "analysis/eap/eap_gradients.hpp"
#include "analysis/eap/edge_attribution.hpp"
#include "core/common/errors.hpp"
#include "core/model/hook_names.hpp"

namespace mechscope::analysis {
namespace {

at::ScalarType patchType(const HookedTransformer& m) { return m.dtype() == at::kDouble ? at::kDouble : at::kFloat; }

/// A block's q, k or v recomputed from per-head inputs `x` [rows, pos, n, d_model]: ln1 → the head's rows of
/// the projection (+ bias) → qk-norm, as the forward computes hook_q/k/v. [rows, pos, n, d_head]
at::Tensor projectHeads(const HookedTransformer& m, const LayerWeights& W, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                        const at::Tensor& qkNormW, int64_t n) {
  const ModelConfig& c = m.config();
  const at::Tensor xm = x.to(m.dtype());  // the patched input in the model's dtype, as the forward computes hook_q/k/v
  // A split model's block weights come to the activations (the home device).
  at::Tensor y = at::einsum("rpnd,ned->rpne", {applyNorm(m, xm, W.ln1W, W.ln1B), w.to(xm.device()).view({n, c.dHead, c.dModel})});
  if (b.defined()) y = y + b.to(xm.device()).view({n, c.dHead});
  return c.qkNorm && qkNormW.defined() ? applyNorm(m, y, qkNormW, {}) : y;
}

/// One receiver site of the patched forward: receivers [b0, b0 + n) reading sources [0, U) (a layer's q/k/v
/// inputs, an MLP's input, the logits). Its input moves by Σ_u mask[v, u, b] Δ_u with Δ_u = a_corrupt(u) −
/// a_current(u), kept as base[v, b] · S_U + Σ_u coef[v, u, b] Δ_u with S_U = Σ_{u<U} Δ_u (one running sum for
/// every site) and coef = mask − base: base = 1 where most of the receiver's sources are patched, so a receiver
/// with every source patched (most of them in a small circuit) needs no sum of its own, and one with none
/// patched none either. Only the (variant, receiver) pairs with a nonzero coef get a running sum `acc`, which
/// each source adds to once as the forward produces it.
struct PatchSite {
  int64_t b0 = 0, n = 0, U = 0;
  at::Tensor base;        // [variants, n] 0/1 in patch type
  at::Tensor active;      // [rows, n] bool: the row's variant patches an edge into the receiver
  at::Tensor variants;    // [V_s] int64: the variants with a running sum here (all of them: undefined)
  at::Tensor receivers;   // [n_s] int64: the receivers with a running sum here
  at::Tensor coef;        // [V_s, U, n_s] mask − base of those pairs
  at::Tensor acc;         // [V_s · batch, pos, n_s, d_model] Σ_u coef Δ_u over the sources produced so far
  bool patched = false;   // some variant patches an edge into the site
  bool consumed = false;
};

/// The site of receivers [b0, b0 + n) for masks `mask` [variants, n_forward, n_backward] and `batch` prompts;
/// `pull`: coef = the mask itself for every pair (base 0), read from PatchedRun's source stack.
PatchSite makeSite(const at::Tensor& mask, int64_t batch, int64_t b0, int64_t n, int64_t U, bool pull) {
  PatchSite s;
  s.b0 = b0;
  s.n = n;
  s.U = U;
  const at::Tensor m = mask.narrow(1, 0, U).narrow(2, b0, n);  // [variants, U, n]
  s.active = m.ne(0).any(1).repeat_interleave(batch, 0);        // [rows, n]
  s.patched = s.active.any().item<bool>();
  if (pull) {
    s.base = at::zeros({mask.size(0), n}, m.options());
    if (s.patched) s.coef = m.contiguous();  // [variants, U, n]
    return s;
  }
  s.base = (m.sum(1) * 2 > U).to(m.scalar_type());              // [variants, n]
  const at::Tensor coef = m - s.base.unsqueeze(1);              // [variants, U, n]
  const at::Tensor pairs = coef.ne(0).any(1);                   // [variants, n]
  const at::Tensor vs = pairs.any(1).nonzero().flatten(), rs = pairs.any(0).nonzero().flatten();
  if (rs.numel() == 0) return s;
  s.receivers = rs;
  if (vs.numel() < mask.size(0)) s.variants = vs;
  s.coef = (s.variants.defined() ? coef.index_select(0, vs) : coef).index_select(2, rs);  // [V_s, U, n_s]
  return s;
}

/// The state of one patched forward: the corrupted run's outputs, the sites, and the running sums.
struct PatchedRun {
  const HookedTransformer& m;
  const EdgeGraph G;
  const NodeOutputs& corrupt;       // [batch, …] shared by every variant's rows
  int64_t variants = 0, batch = 0;
  std::vector<PatchSite> sites;     // forward order: per layer its heads' q/k/v, its MLP; then the logits
  at::Tensor S;                     // [rows, pos, d_model] Σ Δ_u over the sources produced so far
  at::Tensor lastHeads;             // [rows, pos, d_model] the part of S from the last layer's heads
  int64_t produced = 0;             // sources added to S (forward indices [0, produced))
  bool pull = false;                // the sites read `stack` instead of keeping running sums (PatchedRun::choose)
  at::Tensor stack;                 // pull: [variants, n_forward, batch, pos, d_model] Δ of every source produced
  std::vector<at::Tensor> residPre, residMid;
  at::Tensor headDelta;             // [rows, pos, H + 2K, d_model] the current layer's q/k/v input shifts
  int headDeltaLayer = -1;

  /// Whether a site still to be read is patched from source u0 (else the sources from u0 on are not needed).
  [[nodiscard]] bool wants(int64_t u0) const {
    return std::any_of(sites.begin(), sites.end(), [u0](const PatchSite& s) { return s.patched && !s.consumed && s.U > u0; });
  }
  /// Adds sources [u0, u0 + k) with Δ = a_corrupt − a_current `d` [rows, pos, k, d_model] to S and to every
  /// pending site's running sums (call only when wants(u0)).
  void produce(int64_t u0, const at::Tensor& d, bool heads) {
    if (pull) {
      const int64_t k = d.size(2), P = d.size(1), D = d.size(3);
      if (!stack.defined()) stack = at::empty({variants, G.nForward(), batch, P, D}, d.options());
      stack.narrow(1, u0, k).copy_(d.view({variants, batch, P, k, D}).permute({0, 3, 1, 2, 4}));
      produced = u0 + k;
      return;
    }
    const at::Tensor sum = d.sum(2);  // [rows, pos, d_model]
    S = S.defined() ? S + sum : sum;
    lastHeads = heads ? sum : at::Tensor();
    produced = u0 + d.size(2);
    for (PatchSite& s : sites) {
      if (s.U < u0) s.acc = at::Tensor();  // its hook has passed
      if (s.consumed || !s.coef.defined() || s.U <= u0) continue;
      const int64_t k = std::min(d.size(2), s.U - u0), P = d.size(1), D = d.size(3);
      at::Tensor dv = d.narrow(2, 0, k).view({variants, batch, P, k, D});
      if (s.variants.defined()) dv = dv.index_select(0, s.variants);                              // [V_s, batch, pos, k, d_model]
      const at::Tensor add = at::einsum("vbpkd,vkn->vbpnd", {dv, s.coef.narrow(1, u0, k)});      // [V_s, batch, pos, n_s, d_model]
      const at::Tensor flat = add.reshape({-1, P, add.size(3), D});
      if (s.acc.defined()) s.acc.add_(flat);
      else s.acc = flat;
    }
  }
  /// Σ_{u<U} Δ_u: S, less the last layer's heads when the site does not read them (parallel attention and MLP).
  at::Tensor prefix(int64_t U) const {
    if (produced == U) return S;
    if (lastHeads.defined() && produced - G.nHeads == U) return S - lastHeads;
    throw std::logic_error(fmt::format("edge patching: a site reading {} sources met {} produced", U, produced));
  }
  /// The input shift of every receiver of site `s`: [rows, pos, n, d_model] (rows variant-major); releases its sums.
  at::Tensor take(PatchSite& s) {
    if (pull) return pullSite(s);
    const int64_t P = S.size(1), D = S.size(2);
    at::Tensor out = s.base.any().item<bool>()
                         ? (prefix(s.U).view({variants, batch, P, 1, D}) * s.base.view({variants, 1, 1, s.n, 1})).contiguous()
                         : at::zeros({variants, batch, P, s.n, D}, S.options());  // [V, batch, pos, n, d_model]
    if (s.acc.defined()) {
      const at::Tensor acc = s.acc.view({-1, batch, P, s.receivers.numel(), D});  // [V_s, batch, pos, n_s, d_model]
      if (s.variants.defined()) out.index_copy_(0, s.variants, out.index_select(0, s.variants).index_add_(3, s.receivers, acc));
      else out.index_add_(3, s.receivers, acc);
    }
    s.acc = at::Tensor();
    s.consumed = true;
    return out.view({variants * batch, P, s.n, D});
  }
  /// take in pull mode: Σ_u mask[v, u, b] Δ_u read from the stack, one matmul per variant over the site's sources.
  at::Tensor pullSite(PatchSite& s) {
    const int64_t P = stack.size(3), D = stack.size(4);
    s.consumed = true;
    const at::Tensor src = stack.narrow(1, 0, s.U).view({variants, s.U, batch * P * D});  // [V, U, batch·pos·d_model]
    return at::matmul(s.coef.transpose(1, 2), src)                                         // [V, n, batch·pos·d_model]
        .view({variants, s.n, batch, P, D})
        .permute({0, 2, 3, 1, 4})
        .reshape({variants * batch, P, s.n, D});
  }
  /// Running sums or one stack, whichever holds less: the sums keep a d_model vector per row, position and
  /// (variant, receiver) pair that mixes patched and unpatched sources (few for single edges and small
  /// circuits), the stack one per row, position and source (n_forward; less for circuits that mix many).
  void choose(const at::Tensor& mask) {
    int64_t sums = 0;
    for (const PatchSite& s : sites)
      if (s.coef.defined()) sums += s.coef.size(0) * s.coef.size(2);
    if (sums <= variants * G.nForward()) return;
    pull = true;
    for (PatchSite& s : sites) s = makeSite(mask, batch, s.b0, s.n, s.U, true);
  }
};

/// Replaces the heads of hook value `t` [rows, pos, n, d_head] whose receiver is patched.
at::Tensor patchHeads(PatchedRun& run, int l, EdgeInput which, const at::Tensor& t) {
  const ModelConfig& c = run.m.config();
  const auto li = static_cast<size_t>(l);
  PatchSite& site = run.sites[2 * li];
  const int64_t off = which == EdgeInput::Q ? 0 : which == EdgeInput::K ? c.nHeads : c.nHeads + c.nKvHeads;
  const int64_t n = which == EdgeInput::Q ? c.nHeads : c.nKvHeads;
  const at::Tensor act = site.active.narrow(1, off, n);  // [rows, n]
  if (!act.any().item<bool>()) return t;
  if (run.headDeltaLayer != l) {
    run.headDelta = run.take(site);  // [rows, pos, H + 2K, d_model]
    run.headDeltaLayer = l;
  }
  const LayerWeights& W = run.m.weights().layers[li];
  const at::Tensor x = run.residPre[li].to(patchType(run.m)).unsqueeze(2) + run.headDelta.narrow(2, off, n);  // [rows, pos, n, d_model]
  const at::Tensor y = which == EdgeInput::Q   ? projectHeads(run.m, W, x, W.wQ, W.bQ, W.qNormW, n)
                       : which == EdgeInput::K ? projectHeads(run.m, W, x, W.wK, W.bK, W.kNormW, n)
                                               : projectHeads(run.m, W, x, W.wV, W.bV, {}, n);
  return at::where(act.unsqueeze(1).unsqueeze(3), y.to(t.scalar_type()), t);
}

/// a_corrupt − a_current of one kind of source: the corrupted `c` [batch, pos, …] against this run's `t`
/// [rows, pos, …], in patch type.
at::Tensor sourceDifference(const PatchedRun& run, const at::Tensor& c, const at::Tensor& t) {
  const at::ScalarType st = patchType(run.m);
  std::vector<int64_t> shape{run.variants, run.batch};
  shape.insert(shape.end(), t.sizes().begin() + 1, t.sizes().end());
  return (c.to(st).unsqueeze(0) - t.to(st).view(shape)).view(t.sizes());
}

/// Adds the per-row patch hooks of `run` to `hooks`: the sources' differences go into the running sums as the
/// forward produces them, and each receiver site reads its own.
void addPatchHooks(HookSet& hooks, PatchedRun& run) {
  const int L = run.m.config().nLayers;
  hooks.add("blocks.0.hook_resid_pre", [&run](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
    if (run.wants(0)) run.produce(0, sourceDifference(run, run.corrupt.input, t.detach()).unsqueeze(2), false);  // [rows, pos, 1, d_model]
    return std::nullopt;
  });
  auto keep = [](std::vector<at::Tensor>& slot) {
    return [&slot](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
      slot[static_cast<size_t>(hc.layer)] = t.detach();
      return std::nullopt;
    };
  };
  hooks.add("blocks.*.hook_resid_pre", keep(run.residPre));
  hooks.add("blocks.*.hook_resid_mid", keep(run.residMid));
  hooks.add("blocks.*.attn.hook_z", [&run](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    const int l = hc.layer;
    run.headDelta = at::Tensor();  // this layer's q/k/v are done
    if (!run.wants(run.G.headForward(l, 0))) return std::nullopt;
    const at::Tensor dz = sourceDifference(run, run.corrupt.z[static_cast<size_t>(l)], t.detach());  // [rows, pos, head, d_head]
    run.produce(run.G.headForward(l, 0), headOutputs(run.m, l, dz, patchType(run.m)), true);  // [rows, pos, head, d_model]
    return std::nullopt;
  });
  hooks.add("blocks.*.hook_mlp_out", [&run](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    const int l = hc.layer;
    if (!run.wants(run.G.mlpForward(l))) return std::nullopt;
    const at::Tensor d = sourceDifference(run, run.corrupt.mlp[static_cast<size_t>(l)], t.detach());  // [rows, pos, d_model]
    run.produce(run.G.mlpForward(l), d.unsqueeze(2), false);
    return std::nullopt;
  });
  for (const auto& [site, which] : {std::pair{"q", EdgeInput::Q}, {"k", EdgeInput::K}, {"v", EdgeInput::V}})
    hooks.add(std::string("blocks.*.attn.hook_") + site, [&run, which](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
      return patchHeads(run, hc.layer, which, t);
    });
  hooks.add("blocks.*.ln2.hook_normalized", [&run](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    const int l = hc.layer;
    const auto li = static_cast<size_t>(l);
    PatchSite& site = run.sites[2 * li + 1];
    if (!site.patched) return std::nullopt;
    const at::Tensor act = site.active;  // [rows, 1]
    const at::Tensor in = (run.m.config().parallelAttnMlp ? run.residPre[li] : run.residMid[li]).to(patchType(run.m));
    const at::Tensor x = in + run.take(site).squeeze(2);  // [rows, pos, d_model]
    const LayerWeights& W = run.m.weights().layers[li];
    return at::where(act.unsqueeze(2), applyNorm(run.m, x.to(run.m.dtype()), W.ln2W, W.ln2B).to(t.scalar_type()), t);
  });
  hooks.add(hook::residPost(L - 1), [&run](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
    PatchSite& site = run.sites.back();
    if (!site.patched) return std::nullopt;
    return t + run.take(site).squeeze(2).to(t.scalar_type());
  });
}

/// runPatchedVariants with the corrupted run's outputs recorded beforehand.
at::Tensor runVariants(const HookedTransformer& m, const PatchInputs& in, const NodeOutputs& corrupt, const at::Tensor& patched,
                       const RunContext* ctx) {
  const ModelConfig& c = m.config();
  const int64_t V = patched.size(0), B = in.clean.size(0);
  const auto L = static_cast<size_t>(c.nLayers);
  PatchedRun run{m, edgeGraphOf(c), corrupt, V, B, {}, {}, {}, 0, false, {}, std::vector<at::Tensor>(L), std::vector<at::Tensor>(L), {}, -1};
  const EdgeGraph& G = run.G;
  const at::Tensor mask = patched.to(m.device(), patchType(m));  // [variants, n_forward, n_backward]
  for (int l = 0; l < c.nLayers; ++l) {
    const int64_t b0 = G.layerBackward(l), bm = G.mlpBackward(l);
    run.sites.push_back(makeSite(mask, B, b0, G.perLayerReceivers() - 1, G.prevForward(b0), false));
    run.sites.push_back(makeSite(mask, B, bm, 1, G.prevForward(bm), false));
  }
  run.sites.push_back(makeSite(mask, B, G.logitsBackward(), 1, G.nForward(), false));
  run.choose(mask);
  HookSet hooks;
  addPatchHooks(hooks, run);
  ForwardOptions opts;
  opts.logitsLastOnly = true;
  at::NoGradGuard noGrad;
  const ForwardResult fr = m.forward(in.clean.repeat({V, 1}), opts, &hooks, ctx);
  return logitDiff(fr.logits, in.correct.repeat({V}), in.incorrect.repeat({V})).detach().to(at::kCPU, at::kFloat).view({V, B});
}

/// Variants per forward so that variants × prompts ≤ maxBatchRows (at least one).
int64_t variantsPerForward(int64_t maxBatchRows, int64_t prompts) { return std::max<int64_t>(1, maxBatchRows / std::max<int64_t>(1, prompts)); }

/// LD [variants, prompts] of every group (dataset order) for the masks `patched` [variants, n_forward, n_backward],
/// with the mean clean and corrupted LD.
/// `runs` (optional) supplies and receives each group's corrupted node outputs and clean LD.
at::Tensor runOverGroups(const HookedTransformer& m, const std::vector<PatchGroup>& groups, const at::Tensor& patched, int64_t maxBatchRows,
                         double& clean, double& corrupt, int& forwards, const RunContext* ctx, GroupRuns* runs) {
  const int64_t V = patched.size(0);
  int64_t total = 0;
  for (const auto& g : groups) total += g.inputs.clean.size(0);
  if (total == 0) throw InputError("edge patching: no prompts to run");
  at::Tensor out = at::zeros({V, total}, at::kFloat);
  std::vector<int64_t> order;  // every analysed prompt's dataset index, ascending: column = rank
  for (const auto& g : groups)
    for (int64_t i = 0; i < g.inputs.clean.size(0); ++i)
      order.push_back(g.promptIndex.empty() ? static_cast<int64_t>(order.size()) : g.promptIndex[static_cast<size_t>(i)]);
  std::sort(order.begin(), order.end());
  auto column = [&](const PatchGroup& g, int64_t i, int64_t fallback) {
    if (g.promptIndex.empty()) return fallback;
    return static_cast<int64_t>(std::lower_bound(order.begin(), order.end(), g.promptIndex[static_cast<size_t>(i)]) - order.begin());
  };
  GroupRuns own;  // this call's recordings when no `runs` is given
  if (!runs) runs = &own;
  runs->corrupt.resize(groups.size());
  runs->cleanMetric.resize(groups.size());
  double sumClean = 0, sumCorrupt = 0;
  int64_t col = 0;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const PatchGroup& g = groups[gi];
    const int64_t B = g.inputs.clean.size(0);
    NodeOutputs& cor = runs->corrupt[gi];
    if (!cor.input.defined()) {
      cor = recordNodeOutputs(m, g.inputs.corrupt, g.inputs.correct, g.inputs.incorrect, ctx);
      ++forwards;
    }
    at::Tensor& cleanLd = runs->cleanMetric[gi];
    if (!cleanLd.defined()) {
      cleanLd = recordNodeOutputs(m, g.inputs.clean, g.inputs.correct, g.inputs.incorrect, ctx).metric;
      ++forwards;
    }
    sumCorrupt += cor.metric.to(at::kDouble).sum().item<double>();
    sumClean += cleanLd.to(at::kDouble).sum().item<double>();
    const int64_t step = variantsPerForward(maxBatchRows, B);
    for (int64_t v0 = 0; v0 < V; v0 += step) {
      if (ctx) ctx->check();
      const int64_t n = std::min(step, V - v0);
      const at::Tensor ld = runVariants(m, g.inputs, cor, patched.narrow(0, v0, n), ctx);  // [n, B]
      ++forwards;
      for (int64_t i = 0; i < B; ++i)  // back to dataset order
        out.narrow(0, v0, n).select(1, column(g, i, col + i)).copy_(ld.select(1, i));
    }
    col += B;
    if (runs == &own) cor = NodeOutputs{};  // one group's recordings alive at a time, as before
  }
  clean = sumClean / static_cast<double>(total);
  corrupt = sumCorrupt / static_cast<double>(total);
  return out;
}

}  // namespace

at::Tensor runPatchedVariants(const HookedTransformer& m, const PatchInputs& in, const at::Tensor& patched, const RunContext* ctx) {
  const EdgeGraph G = edgeGraphOf(m.config());
  if (patched.dim() != 3 || patched.size(1) != G.nForward() || patched.size(2) != G.nBackward())
    throw InputError(fmt::format("edge patching: masks must be [variants, {}, {}] for this model", G.nForward(), G.nBackward()));
  const NodeOutputs corrupt = recordNodeOutputs(m, in.corrupt, in.correct, in.incorrect, ctx);
  return runVariants(m, in, corrupt, patched, ctx);
}

EdgePatchResult patchEdges(const HookedTransformer& m, const std::vector<PatchGroup>& groups, const std::vector<EdgeRef>& edges,
                           int64_t maxBatchRows, const RunContext* ctx, GroupRuns* runs) {
  const EdgeGraph G = edgeGraphOf(m.config());
  const at::Tensor masks = at::zeros({static_cast<int64_t>(edges.size()), G.nForward(), G.nBackward()}, at::kFloat);  // [edges, F, B]
  for (size_t i = 0; i < edges.size(); ++i) {
    const EdgeRef& e = edges[i];
    if (e.backward < 0 || e.backward >= G.nBackward() || e.forward < 0 || e.forward >= G.prevForward(e.backward))
      throw InputError(fmt::format("edge patching: ({}, {}) is not an edge of this model's graph", e.forward, e.backward));
    masks[static_cast<int64_t>(i)][e.forward][e.backward] = 1.0;
  }
  EdgePatchResult r;
  if (edges.empty()) return r;
  r.metricPatched = runOverGroups(m, groups, masks, maxBatchRows, r.metricClean, r.metricCorrupt, r.forwards, ctx, runs);  // [edges, prompts]
  r.effect = r.metricPatched.to(at::kDouble).mean(1) - r.metricClean;
  return r;
}

at::Tensor edgesByScore(const EdgeGraph& G, const at::Tensor& scores) {
  const at::Tensor mask = edgeMask(G).cpu();  // [F, B] bool
  const at::Tensor key = at::where(mask, scores.to(at::kCPU, at::kDouble).abs(), at::full({}, -1.0, at::kDouble)).flatten();  // non-edges last
  return std::get<1>(key.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true)).narrow(0, 0, mask.sum().item<int64_t>());
}

EdgeRef edgeByName(const EdgeGraph& G, const std::string& upstream, const std::string& downstream, const std::string& receiver) {
  for (int64_t b = 0; b < G.nBackward(); ++b) {
    if (G.backwardNode(b) != downstream || toString(G.backwardReceiver(b)) != receiver) continue;
    for (int64_t f = 0; f < G.prevForward(b); ++f)
      if (G.forwardName(f) == upstream) return {f, b};
  }
  throw InputError(fmt::format("edge patching: the graph has no edge {} → {} ({})", upstream, downstream, receiver));
}

at::Tensor pruneCircuit(const EdgeGraph& G, at::Tensor inGraph) {
  const int64_t F = G.nForward(), B = G.nBackward();
  at::Tensor owns = at::zeros({F, B}, at::kBool);  // [F, B]: the receivers of each source's node
  const int group = G.nHeads / std::max(1, G.nKvHeads);
  for (int l = 0; l < G.nLayers; ++l) {
    for (int h = 0; h < G.nHeads; ++h) {
      const int64_t f = G.headForward(l, h);
      owns[f][G.headBackward(l, h, EdgeInput::Q)] = true;
      owns[f][G.headBackward(l, h / group, EdgeInput::K)] = true;
      owns[f][G.headBackward(l, h / group, EdgeInput::V)] = true;
    }
    owns[G.mlpForward(l)][G.mlpBackward(l)] = true;
  }
  inGraph = inGraph.to(at::kBool).cpu().clone();
  for (;;) {
    const at::Tensor outgoing = inGraph.any(1);                                              // [F]
    at::Tensor incoming = owns.logical_and(inGraph.any(0).unsqueeze(0)).any(1);              // [F]
    incoming[0] = true;                                                                     // the input
    const at::Tensor nodes = outgoing.logical_and(incoming);                                 // [F]
    at::Tensor receivers = owns.logical_and(nodes.unsqueeze(1)).any(0);                      // [B]
    receivers[G.logitsBackward()] = true;                                                   // the logits
    const at::Tensor next = inGraph.logical_and(nodes.unsqueeze(1)).logical_and(receivers.unsqueeze(0));
    if (at::equal(next, inGraph)) return next;
    inGraph = next;
  }
}

namespace {

/// The curve at `sizes` (ascending, within [0, edges]; repeats allowed) with x axis `fraction` (one per
/// size): each distinct circuit runs once; trapezoids between consecutive points.
FaithfulnessCurve curveAt(const HookedTransformer& m, const std::vector<PatchGroup>& groups, const at::Tensor& scores,
                          const std::vector<int64_t>& sizes, const std::vector<double>& fraction, int64_t maxBatchRows, const RunContext* ctx,
                          bool prune, GroupRuns* runs) {
  const EdgeGraph G = edgeGraphOf(m.config());
  const at::Tensor mask = edgeMask(G).cpu();         // [F, B] bool
  const at::Tensor order = edgesByScore(G, scores);  // [E] edges, largest |score| first
  std::vector<int64_t> distinct(sizes);
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  at::Tensor patched = at::zeros({static_cast<int64_t>(distinct.size()), G.nForward(), G.nBackward()}, at::kFloat);  // [distinct, F, B]
  std::vector<int64_t> afterPruning;
  for (size_t i = 0; i < distinct.size(); ++i) {
    at::Tensor circuit = at::zeros({G.nForward() * G.nBackward()}, at::kBool);
    circuit.index_fill_(0, order.narrow(0, 0, distinct[i]), true);
    circuit = circuit.view({G.nForward(), G.nBackward()});
    if (prune) circuit = pruneCircuit(G, circuit);
    afterPruning.push_back(circuit.sum().item<int64_t>());
    patched[static_cast<int64_t>(i)].copy_(mask.logical_and(circuit.logical_not()).to(at::kFloat));  // the circuit stays clean
  }
  FaithfulnessCurve c;
  const at::Tensor ld = runOverGroups(m, groups, patched, maxBatchRows, c.metricClean, c.metricCorrupt, c.forwards, ctx, runs);  // [distinct, prompts]
  const double span = c.metricClean - c.metricCorrupt;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const auto k = static_cast<size_t>(std::lower_bound(distinct.begin(), distinct.end(), sizes[i]) - distinct.begin());
    c.edgesKept.push_back(sizes[i]);
    c.edgesAfterPruning.push_back(afterPruning[k]);
    c.fraction.push_back(fraction[i]);
    c.metric.push_back(ld[static_cast<int64_t>(k)].to(at::kDouble).mean().item<double>());
    c.faithfulness.push_back(span != 0 ? (c.metric.back() - c.metricCorrupt) / span : NAN);
    c.average += c.faithfulness.back() / static_cast<double>(sizes.size());
  }
  for (size_t i = 1; i < sizes.size(); ++i) {
    const double w = c.fraction[i] - c.fraction[i - 1];
    c.cpr += w * (c.faithfulness[i] + c.faithfulness[i - 1]) / 2;
    c.cmd += w * (std::abs(1 - c.faithfulness[i]) + std::abs(1 - c.faithfulness[i - 1])) / 2;
  }
  return c;
}

void checkScores(const EdgeGraph& G, const at::Tensor& scores) {
  if (scores.dim() != 2 || scores.size(0) != G.nForward() || scores.size(1) != G.nBackward())
    throw InputError(fmt::format("faithfulness curve: scores must be [{}, {}] for this model", G.nForward(), G.nBackward()));
}

}  // namespace

FaithfulnessCurve faithfulnessCurve(const HookedTransformer& m, const std::vector<PatchGroup>& groups, const at::Tensor& scores,
                                    std::vector<int64_t> sizes, int64_t maxBatchRows, const RunContext* ctx, bool prune, GroupRuns* runs) {
  const EdgeGraph G = edgeGraphOf(m.config());
  checkScores(G, scores);
  const int64_t E = G.edgeCount();
  for (auto& n : sizes) n = std::clamp<int64_t>(n, 0, E);
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  std::vector<double> fraction;
  for (int64_t n : sizes) fraction.push_back(E > 0 ? static_cast<double>(n) / static_cast<double>(E) : 0.0);
  return curveAt(m, groups, scores, sizes, fraction, maxBatchRows, ctx, prune, runs);
}

std::vector<double> mibFractions() { return {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0}; }

FaithfulnessCurve faithfulnessAtFractions(const HookedTransformer& m, const std::vector<PatchGroup>& groups, const at::Tensor& scores,
                                          std::vector<double> fractions, int64_t maxBatchRows, const RunContext* ctx, GroupRuns* runs) {
  const EdgeGraph G = edgeGraphOf(m.config());
  checkScores(G, scores);
  for (double f : fractions)
    if (!(f >= 0.0 && f <= 1.0)) throw InputError(fmt::format("faithfulness curve: fraction {} is outside [0, 1]", f));
  std::sort(fractions.begin(), fractions.end());
  std::vector<int64_t> sizes;
  for (double f : fractions) sizes.push_back(static_cast<int64_t>(f * static_cast<double>(G.edgeCount())));  // int(pct * n): truncation
  return curveAt(m, groups, scores, sizes, fractions, maxBatchRows, ctx, /*prune=*/true, runs);
}

}  // namespace mechscope::analysis
