// Exact edge patching and the circuit faithfulness curve (edge_patching.hpp).
#include "analysis/eap/edge_patching.hpp"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard / AutoGradMode: not pulled in by ATen.h in LibTorch 2.x

#include <algorithm>
#include <cmath>
#include <numeric>

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

/// The outputs of every source node, in forward order: [rows, pos, n_forward, d_model]. A head's output is
/// z_h · W_O[h] (b_O belongs to no head); `layers` limits the stack to the input and layers < layers, and
/// `headsOfNext` adds the heads of layer `layers` (an MLP's sources in a sequential block).
at::Tensor sourceStack(const HookedTransformer& m, const at::Tensor& input, const std::vector<at::Tensor>& z,
                       const std::vector<at::Tensor>& mlp, int layers, bool headsOfNext = false) {
  const at::ScalarType st = patchType(m);
  std::vector<at::Tensor> parts{input.to(st).unsqueeze(2)};
  for (int l = 0; l < layers; ++l) {
    parts.push_back(headOutputs(m, l, z[static_cast<size_t>(l)], st));     // [rows, pos, head, d_model]
    parts.push_back(mlp[static_cast<size_t>(l)].to(st).unsqueeze(2));      // [rows, pos, 1, d_model]
  }
  if (headsOfNext) parts.push_back(headOutputs(m, layers, z[static_cast<size_t>(layers)], st));
  return at::cat(parts, 2);
}

/// A block's q, k or v recomputed from per-head inputs `x` [rows, pos, n, d_model]: ln1 → the head's rows of
/// the projection (+ bias) → qk-norm, as the forward computes hook_q/k/v. [rows, pos, n, d_head]
at::Tensor projectHeads(const HookedTransformer& m, const LayerWeights& W, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                        const at::Tensor& qkNormW, int64_t n) {
  const ModelConfig& c = m.config();
  const at::Tensor xm = x.to(m.dtype());  // the patched input in the model's dtype, as the forward computes hook_q/k/v
  at::Tensor y = at::einsum("rpnd,ned->rpne", {applyNorm(m, xm, W.ln1W, W.ln1B), w.view({n, c.dHead, c.dModel})});
  if (b.defined()) y = y + b.view({n, c.dHead});
  return c.qkNorm && qkNormW.defined() ? applyNorm(m, y, qkNormW, {}) : y;
}

/// The state of one patched forward: the corrupted sources, the masks, and the run's own sources so far.
struct PatchedRun {
  const HookedTransformer& m;
  const EdgeGraph G;
  at::Tensor corrupt;        // [batch, pos, n_forward, d_model] corrupted sources (every variant's rows share them)
  at::Tensor mask;           // [variants, n_forward, n_backward] patch-type (1 = carries the corrupted activation)
  at::Tensor input;          // this run's embeddings
  std::vector<at::Tensor> z, mlp, residPre, residMid;
  std::vector<at::Tensor> headDelta;  // per layer [rows, pos, H + 2K, d_model] once computed

  /// Σ_u mask[u, b] (corrupt_u − current_u) for receivers b0 … b0 + n − 1 reading sources [0, U): [rows, pos, n, d_model]
  /// (rows variant-major: variant v's prompts at rows v·batch …).
  at::Tensor delta(int layersDone, bool headsOfNext, int64_t U, int64_t b0, int64_t n) const {
    const int64_t V = mask.size(0), B = corrupt.size(0);
    const at::Tensor cur = sourceStack(m, input, z, mlp, layersDone, headsOfNext);  // [rows, pos, U, d_model]
    const at::Tensor diff = corrupt.narrow(2, 0, U).unsqueeze(0) - cur.view({V, B, cur.size(1), U, cur.size(3)});  // [variant, batch, pos, U, d_model]
    return at::einsum("vbpud,vun->vbpnd", {diff, mask.narrow(1, 0, U).narrow(2, b0, n)}).reshape({V * B, cur.size(1), n, cur.size(3)});
  }
  /// Which (row, receiver) pairs of b0 … b0 + n − 1 have a patched edge: [rows, n] bool.
  at::Tensor active(int64_t U, int64_t b0, int64_t n) const {
    return mask.narrow(1, 0, U).narrow(2, b0, n).ne(0).any(1).repeat_interleave(corrupt.size(0), 0);
  }
};

/// Replaces the heads of hook value `t` [rows, pos, n, d_head] whose receiver is patched.
at::Tensor patchHeads(PatchedRun& run, int l, EdgeInput which, const at::Tensor& t) {
  const ModelConfig& c = run.m.config();
  const auto li = static_cast<size_t>(l);
  const int64_t b0 = run.G.layerBackward(l), U = run.G.prevForward(b0), nRecv = c.nHeads + 2 * int64_t{c.nKvHeads};
  const int64_t off = which == EdgeInput::Q ? 0 : which == EdgeInput::K ? c.nHeads : c.nHeads + c.nKvHeads;
  const int64_t n = which == EdgeInput::Q ? c.nHeads : c.nKvHeads;
  const at::Tensor act = run.active(U, b0 + off, n);  // [rows, n]
  if (!act.any().item<bool>()) return t;
  if (!run.headDelta[li].defined()) run.headDelta[li] = run.delta(l, false, U, b0, nRecv);
  const LayerWeights& W = run.m.weights().layers[li];
  const at::Tensor x = run.residPre[li].to(patchType(run.m)).unsqueeze(2) + run.headDelta[li].narrow(2, off, n);  // [rows, pos, n, d_model]
  const at::Tensor y = which == EdgeInput::Q   ? projectHeads(run.m, W, x, W.wQ, W.bQ, W.qNormW, n)
                       : which == EdgeInput::K ? projectHeads(run.m, W, x, W.wK, W.bK, W.kNormW, n)
                                               : projectHeads(run.m, W, x, W.wV, W.bV, {}, n);
  return at::where(act.unsqueeze(1).unsqueeze(3), y.to(t.scalar_type()), t);
}

/// Adds the per-row patch hooks of `run` to `hooks`.
void addPatchHooks(HookSet& hooks, PatchedRun& run) {
  const int L = run.m.config().nLayers;
  hooks.add("blocks.0.hook_resid_pre", [&run](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
    run.input = t.detach();
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
  hooks.add("blocks.*.attn.hook_z", keep(run.z));
  hooks.add("blocks.*.hook_mlp_out", keep(run.mlp));
  for (const auto& [site, which] : {std::pair{"q", EdgeInput::Q}, {"k", EdgeInput::K}, {"v", EdgeInput::V}})
    hooks.add(std::string("blocks.*.attn.hook_") + site, [&run, which](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
      return patchHeads(run, hc.layer, which, t);
    });
  hooks.add("blocks.*.ln2.hook_normalized", [&run](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    const int l = hc.layer;
    const auto li = static_cast<size_t>(l);
    const int64_t bm = run.G.mlpBackward(l), U = run.G.prevForward(bm);
    const at::Tensor act = run.active(U, bm, 1);  // [rows, 1]
    if (!act.any().item<bool>()) return std::nullopt;
    const at::Tensor in = (run.m.config().parallelAttnMlp ? run.residPre[li] : run.residMid[li]).to(patchType(run.m));
    const at::Tensor x = in + run.delta(l, !run.G.parallelAttnMlp, U, bm, 1).squeeze(2);  // [rows, pos, d_model]
    const LayerWeights& W = run.m.weights().layers[li];
    return at::where(act.unsqueeze(2), applyNorm(run.m, x.to(run.m.dtype()), W.ln2W, W.ln2B).to(t.scalar_type()), t);
  });
  hooks.add(hook::residPost(L - 1), [&run, L](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
    const int64_t bl = run.G.logitsBackward();
    if (!run.active(run.G.nForward(), bl, 1).any().item<bool>()) return std::nullopt;
    return t + run.delta(L, false, run.G.nForward(), bl, 1).squeeze(2).to(t.scalar_type());
  });
}

/// runPatchedVariants with the corrupted run's outputs recorded beforehand.
at::Tensor runVariants(const HookedTransformer& m, const PatchInputs& in, const NodeOutputs& corrupt, const at::Tensor& patched,
                       const RunContext* ctx) {
  const ModelConfig& c = m.config();
  const int64_t V = patched.size(0), B = in.clean.size(0);
  const auto L = static_cast<size_t>(c.nLayers);
  PatchedRun run{m, edgeGraphOf(c), {}, {}, {}, std::vector<at::Tensor>(L), std::vector<at::Tensor>(L), std::vector<at::Tensor>(L),
                 std::vector<at::Tensor>(L), std::vector<at::Tensor>(L)};
  run.corrupt = sourceStack(m, corrupt.input, corrupt.z, corrupt.mlp, c.nLayers);  // [batch, pos, n_forward, d_model]
  run.mask = patched.to(m.device(), patchType(m));                                   // [variants, n_forward, n_backward]
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
at::Tensor runOverGroups(const HookedTransformer& m, const std::vector<PatchGroup>& groups, const at::Tensor& patched, int64_t maxBatchRows,
                         double& clean, double& corrupt, int& forwards, const RunContext* ctx) {
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
  double sumClean = 0, sumCorrupt = 0;
  int64_t col = 0;
  for (const auto& g : groups) {
    const int64_t B = g.inputs.clean.size(0);
    const NodeOutputs cor = recordNodeOutputs(m, g.inputs.corrupt, g.inputs.correct, g.inputs.incorrect, ctx);
    const NodeOutputs cle = recordNodeOutputs(m, g.inputs.clean, g.inputs.correct, g.inputs.incorrect, ctx);
    forwards += 2;
    sumCorrupt += cor.metric.to(at::kDouble).sum().item<double>();
    sumClean += cle.metric.to(at::kDouble).sum().item<double>();
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
                           int64_t maxBatchRows, const RunContext* ctx) {
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
  r.metricPatched = runOverGroups(m, groups, masks, maxBatchRows, r.metricClean, r.metricCorrupt, r.forwards, ctx);  // [edges, prompts]
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
                          bool prune) {
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
  const at::Tensor ld = runOverGroups(m, groups, patched, maxBatchRows, c.metricClean, c.metricCorrupt, c.forwards, ctx);  // [distinct, prompts]
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
                                    std::vector<int64_t> sizes, int64_t maxBatchRows, const RunContext* ctx, bool prune) {
  const EdgeGraph G = edgeGraphOf(m.config());
  checkScores(G, scores);
  const int64_t E = G.edgeCount();
  for (auto& n : sizes) n = std::clamp<int64_t>(n, 0, E);
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  std::vector<double> fraction;
  for (int64_t n : sizes) fraction.push_back(E > 0 ? static_cast<double>(n) / static_cast<double>(E) : 0.0);
  return curveAt(m, groups, scores, sizes, fraction, maxBatchRows, ctx, prune);
}

std::vector<double> mibFractions() { return {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0}; }

FaithfulnessCurve faithfulnessAtFractions(const HookedTransformer& m, const std::vector<PatchGroup>& groups, const at::Tensor& scores,
                                          std::vector<double> fractions, int64_t maxBatchRows, const RunContext* ctx) {
  const EdgeGraph G = edgeGraphOf(m.config());
  checkScores(G, scores);
  for (double f : fractions)
    if (!(f >= 0.0 && f <= 1.0)) throw InputError(fmt::format("faithfulness curve: fraction {} is outside [0, 1]", f));
  std::sort(fractions.begin(), fractions.end());
  std::vector<int64_t> sizes;
  for (double f : fractions) sizes.push_back(static_cast<int64_t>(f * static_cast<double>(G.edgeCount())));  // int(pct * n): truncation
  return curveAt(m, groups, scores, sizes, fractions, maxBatchRows, ctx, /*prune=*/true);
}

}  // namespace mechscope::analysis
