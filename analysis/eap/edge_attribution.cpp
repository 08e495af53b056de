// EAP and EAP-IG over a dataset's length groups (edge_attribution.hpp).
#include "analysis/eap/edge_attribution.hpp"

#include <ATen/ATen.h>

#include <algorithm>

#include <fmt/format.h>

#include "analysis/eap/eap_gradients.hpp"
#include "analysis/patching/patch_groups.hpp"
#include "core/common/device_memory.hpp"
#include "core/common/errors.hpp"
#include "core/model/memory_estimate.hpp"

namespace mechscope::analysis {
namespace {

/// The dtype scores are formed in: fp32, or fp64 for an fp64 model (reference runs).
at::ScalarType scoreType(const HookedTransformer& m) { return m.dtype() == at::kDouble ? at::kDouble : at::kFloat; }

/// a_corrupt − a_clean of every source node at positions [p0, p0 + c): [batch, c, n_forward, d_model] in
/// scoreType. A head's output is z_h · W_O[h] (hook_result's value without materialising it per run); b_O
/// belongs to no head and cancels.
at::Tensor activationDifference(const HookedTransformer& m, const NodeOutputs& corrupt, const NodeOutputs& clean, int64_t p0,
                                int64_t c) {
  const ModelConfig& cfg = m.config();
  const at::ScalarType st = scoreType(m);
  auto diff = [&](const at::Tensor& a, const at::Tensor& b) { return a.narrow(1, p0, c).to(st) - b.narrow(1, p0, c).to(st); };
  std::vector<at::Tensor> parts{diff(corrupt.input, clean.input).unsqueeze(2)};
  for (int l = 0; l < cfg.nLayers; ++l) {
    const auto li = static_cast<size_t>(l);
    parts.push_back(headOutputs(m, l, diff(corrupt.z[li], clean.z[li]), st));  // [batch, c, head, d_model]
    parts.push_back(diff(corrupt.mlp[li], clean.mlp[li]).unsqueeze(2));         // [batch, c, 1, d_model]
  }
  return at::cat(parts, 2);
}

/// Bytes one position slice of accumulateScores may take: ~256 MB on CPU, 2 GB on CUDA.
int64_t sliceBudgetBytes(bool cuda) { return cuda ? (int64_t{2} << 30) : (int64_t{256} << 20); }

/// Positions per slice of accumulateScores: Δa [batch, c, n_forward, d_model] plus one layer's receiver
/// gradients and their pull-back copies ([rows, c, H + 2K + 1, d_model], about three alive) within
/// sliceBudgetBytes; `asked` > 0 overrides.
int64_t positionSlice(const HookedTransformer& m, const EdgeGraph& G, int64_t batch, int64_t rows, int64_t positions, int64_t asked) {
  if (asked > 0) return std::min(asked, positions);
  const int64_t budget = sliceBudgetBytes(m.device().is_cuda());
  const int64_t perPosition = 4 * m.config().dModel * (batch * G.nForward() + 3 * rows * (G.perLayerReceivers() + 1));
  return std::clamp<int64_t>(budget / std::max<int64_t>(1, perPosition), 1, positions);
}

/// Δa of one batch for accumulateScores: formed once and kept when the prompt is one slice (every EAP-IG pass
/// then reuses it), else formed slice by slice on each use, so the whole prompt's Δa never exists.
class SourceDifferences {
 public:
  SourceDifferences(const HookedTransformer& m, const NodeOutputs& corrupt, const NodeOutputs& clean, int64_t slice)
      : m_model(m), m_corrupt(corrupt), m_clean(clean), m_slice(slice) {
    const int64_t P = clean.input.size(1);
    if (slice >= P) m_whole = activationDifference(m, corrupt, clean, 0, P);  // [batch, pos, n_forward, d_model]
  }
  /// Positions per slice.
  [[nodiscard]] int64_t slice() const { return m_slice; }
  /// Δa at positions [p0, p0 + c): [batch, c, n_forward, d_model].
  [[nodiscard]] at::Tensor at(int64_t p0, int64_t c) const {
    return m_whole.defined() ? m_whole.narrow(1, p0, c) : activationDifference(m_model, m_corrupt, m_clean, p0, c);
  }

 private:
  const HookedTransformer& m_model;
  const NodeOutputs& m_corrupt;
  const NodeOutputs& m_clean;
  int64_t m_slice;
  at::Tensor m_whole;
};

/// Σ over the `steps` step-major row blocks of t [steps·batch, …] → [batch, …] in `type`.
at::Tensor sumSteps(const at::Tensor& t, int64_t steps, at::ScalarType type) {
  if (steps == 1) return t.to(type);
  std::vector<int64_t> shape{steps, t.size(0) / steps};
  shape.insert(shape.end(), t.sizes().begin() + 1, t.sizes().end());
  return t.to(type).view(shape).sum(0);
}

/// scores [n_forward, n_backward] fp64 += weight · Σ_{batch,pos} Δa[source] · ∂LD/∂input[receiver] over the
/// graph's edges, the gradients of `g` summed over its `steps` step-major row blocks first (the score is linear
/// in the gradient). Position slice by position slice, so neither Δa nor the receivers' input gradients of the
/// whole prompt exist at once.
void accumulateScores(at::Tensor& scores, const HookedTransformer& m, const EdgeGraph& G, const SourceDifferences& deltas,
                      const ReceiverGradients& g, int64_t steps, double weight, const RunContext* ctx) {
  const int64_t P = g.logits.size(1), slice = deltas.slice();
  for (int64_t p0 = 0; p0 < P; p0 += slice) {
    if (ctx) ctx->check();
    const int64_t c = std::min(slice, P - p0);
    const at::Tensor delta = deltas.at(p0, c);  // [batch, c, n_forward, d_model]
    const at::ScalarType st = delta.scalar_type();
    for (int l = 0; l < G.nLayers; ++l) {
      const LayerReceiverGrads r = receiverInputGrads(m, g, l, p0, p0 + c);
      const int64_t b0 = G.layerBackward(l), nHeadRecv = G.perLayerReceivers() - 1;
      const at::Tensor heads = sumSteps(at::cat({r.q, r.k, r.v}, 2), steps, st);  // [batch, c, H + 2K, d_model]
      const int64_t prevHeads = G.prevForward(b0);
      scores.narrow(0, 0, prevHeads).narrow(1, b0, nHeadRecv) +=
          at::einsum("bpfd,bpgd->fg", {delta.narrow(2, 0, prevHeads), heads}).to(at::kDouble) * weight;
      const int64_t bm = G.mlpBackward(l), prevMlp = G.prevForward(bm);
      scores.narrow(0, 0, prevMlp).select(1, bm) +=
          at::einsum("bpfd,bpd->f", {delta.narrow(2, 0, prevMlp), sumSteps(r.mlp, steps, st)}).to(at::kDouble) * weight;
    }
    scores.select(1, G.logitsBackward()) +=
        at::einsum("bpfd,bpd->f", {delta, sumSteps(g.logits.narrow(1, p0, c), steps, st)}).to(at::kDouble) * weight;
  }
}

/// One batch: adds its prompt-summed scores to `scores`, its LDs to the metric lists.
/// `keep`, when given, receives the corrupted run's node outputs.
void scoreBatch(const HookedTransformer& m, const EdgeGraph& G, const PatchInputs& in, const EapParams& p, at::Tensor& scores,
                EapResult& r, std::vector<at::Tensor>& ldClean, std::vector<at::Tensor>& ldCorrupt, const RunContext* ctx,
                NodeOutputs* keep) {
  NodeOutputs corrupt = recordNodeOutputs(m, in.corrupt, in.correct, in.incorrect, ctx, p.attention);
  ++r.forwards;
  ldCorrupt.push_back(corrupt.metric.cpu());
  if (p.method == EapMethod::Eap) {
    NodeOutputs clean;
    const ReceiverGradients g = receiverGradients(m, in.clean, in.correct, in.incorrect, {}, &clean, ctx, p.attention);
    ++r.forwards;
    ++r.backwards;
    ldClean.push_back(clean.metric.cpu());
    const int64_t B = in.clean.size(0), P = in.clean.size(1);
    accumulateScores(scores, m, G, SourceDifferences(m, corrupt, clean, positionSlice(m, G, B, B, P, p.positionSlice)), g, 1, 1.0, ctx);
    if (keep) *keep = std::move(corrupt);
    return;
  }
  const NodeOutputs clean = recordNodeOutputs(m, in.clean, in.correct, in.incorrect, ctx, p.attention);
  ++r.forwards;
  ldClean.push_back(clean.metric.cpu());
  // Hanna et al.'s code (eap/attribute.py, get_scores_eap_ig): k = 0 … steps − 1, α = k / steps, so the
  // corrupt end is a point and the clean end is not (a left Riemann sum); docs/metrics.md §12.6 says why.
  // Several steps share one forward/backward (stacked on the batch, step-major, ≤ maxBatchRows rows): the
  // rows do not interact, and the score is linear in the gradient, so each pass's gradients are summed over
  // its steps before they meet Δa.
  const int64_t B = in.clean.size(0), P = in.clean.size(1);
  const int64_t perPass = std::max<int64_t>(1, p.maxBatchRows / B);
  const SourceDifferences deltas(m, corrupt, clean, positionSlice(m, G, B, std::min<int64_t>(perPass, p.steps) * B, P, p.positionSlice));
  for (int k0 = 0; k0 < p.steps; k0 += static_cast<int>(perPass)) {
    if (ctx) ctx->check();
    const int64_t s = std::min<int64_t>(perPass, p.steps - k0);
    std::vector<at::Tensor> inputs;
    for (int64_t k = k0; k < k0 + s; ++k) {
      const double alpha = static_cast<double>(k) / p.steps;
      inputs.push_back(corrupt.input + alpha * (clean.input - corrupt.input));  // [batch, pos, d_model]
    }
    const ReceiverGradients g = receiverGradients(m, in.clean.repeat({s, 1}), in.correct.repeat({s}), in.incorrect.repeat({s}),
                                                  at::cat(inputs, 0), nullptr, ctx, p.attention);  // [steps·batch, …]
    ++r.forwards;
    ++r.backwards;
    accumulateScores(scores, m, G, deltas, g, s, 1.0 / p.steps, ctx);
  }
  if (keep) *keep = std::move(corrupt);
}

/// Rows [r0, r0 + n) of a batch.
PatchInputs sliceRows(const PatchInputs& in, int64_t r0, int64_t n) {
  PatchInputs s;
  s.clean = in.clean.narrow(0, r0, n);
  s.corrupt = in.corrupt.narrow(0, r0, n);
  s.correct = in.correct.narrow(0, r0, n);
  s.incorrect = in.incorrect.narrow(0, r0, n);
  return s;
}

}  // namespace

std::string toString(EapMethod m) { return m == EapMethod::Eap ? "eap" : "eap-ig"; }

EapMethod parseEapMethod(const std::string& name) {
  if (name == "eap") return EapMethod::Eap;
  if (name == "eap-ig") return EapMethod::EapIg;
  throw InputError(fmt::format("--method: '{}' is not eap or eap-ig", name));
}

EdgeGraph edgeGraphOf(const ModelConfig& c) {
  requireAdditiveHeads(c);
  EdgeGraph g;
  g.nLayers = c.nLayers;
  g.nHeads = c.nHeads;
  g.nKvHeads = c.nKvHeads;
  g.parallelAttnMlp = c.parallelAttnMlp;
  return g;
}

at::Tensor edgeMask(const EdgeGraph& G) {
  at::Tensor mask = at::zeros({G.nForward(), G.nBackward()}, at::kBool);
  for (int64_t b = 0; b < G.nBackward(); ++b) mask.select(1, b).narrow(0, 0, G.prevForward(b)).fill_(true);
  return mask;
}

void checkEapInputs(const HookedTransformer& m, const std::vector<PatchGroup>& groups, const EapParams& p) {
  if (p.steps < 1) throw InputError(fmt::format("--steps: {} is below the minimum 1", p.steps));
  if (p.maxBatchRows < 1) throw InputError(fmt::format("--max-batch-rows: {} is below the minimum 1", p.maxBatchRows));
  if (groups.empty()) throw InputError("eap: the dataset has no usable prompt pair (clean and corrupted of equal length with both answers)");
  for (const auto& g : groups) checkPatchInputs(g.inputs, m.config().dVocab);
  // One batch keeps, until its backward: every layer's forward working set (autograd's saved tensors); after it,
  // the hook gradients with the recorded hooks and residuals they are pulled back on, and both runs' node
  // outputs; Δa and the receivers' input gradients exist one position slice at a time (≤ the slice budget).
  // Refused before compute when that exceeds the memory this process can use: host memory for CPU models,
  // the device's free memory for CUDA ones (whose weights are already resident, so not counted again). Only
  // the explicit path keeps [batch, head, pos, key] patterns for the backward: Auto takes the fused kernel or,
  // on long inputs without one, the chunked path, whose backward recomputes its tiles.
  const bool cuda = m.device().is_cuda();
  std::string source = "CUDA free memory";
  const int64_t avail = cuda ? cudaAvailableBytes(m.device().has_index() ? m.device().index() : 0) : availableMemoryBytes(&source);
  if (avail < 0) return;
  for (const auto& g : groups) {
    ForwardMemoryOptions fo;
    const int64_t prompts = std::min<int64_t>(g.inputs.clean.size(0), p.maxBatchRows);
    fo.batch = p.method == EapMethod::EapIg ? std::max(prompts, std::min<int64_t>(p.steps, p.maxBatchRows / prompts) * prompts) : prompts;
    fo.positions = g.inputs.clean.size(1);
    fo.elementBytes = static_cast<int64_t>(at::elementSize(m.dtype()));
    fo.fullLogits = false;
    fo.materializedAttention = p.attention == AttentionPath::Explicit;
    const MemoryEstimate e = estimateForwardMemory(m.config(), fo);
    const int64_t saved = e.layer * m.config().nLayers;
    const ModelConfig& c = m.config();
    // Per row, position and layer: gradient and value at hook_q/k/v, resid_pre, resid_mid and the ln2 gradient;
    // per prompt and position, both runs' node outputs (embedding, every z and MLP output).
    const int64_t hooks = fo.batch * fo.positions * c.nLayers * (2 * (c.nHeads + 2 * c.nKvHeads) * c.dHead + 3 * c.dModel);
    const int64_t nodes = 2 * prompts * fo.positions * (c.dModel + c.nLayers * (c.nHeads * c.dHead + c.dModel));
    const int64_t scores = (hooks + nodes) * fo.elementBytes + sliceBudgetBytes(cuda);
    const int64_t weights = cuda ? 0 : e.weights;
    const int64_t total = weights + saved + e.retained + scores;
    if (total > avail)
      throw InputError(fmt::format("eap: one pass of {} rows × {} positions needs ≈ {} of memory (weights {} + the layers "
                                   "autograd keeps {} + gradients, node outputs and one position slice {}) but only {} is available ({}); "
                                   "lower --max-batch-rows",
                                   fo.batch, fo.positions, formatBytes(total), formatBytes(weights), formatBytes(saved),
                                   formatBytes(scores), formatBytes(avail), source));
  }
}

EapResult edgeAttribution(const HookedTransformer& m, const std::vector<PatchGroup>& groups, const EapParams& p, const RunContext* ctx) {
  return edgeAttribution(m, groups, p, ctx, nullptr);
}

EapResult edgeAttribution(const HookedTransformer& m, const std::vector<PatchGroup>& groups, const EapParams& p, const RunContext* ctx,
                          GroupRuns* runs) {
  checkEapInputs(m, groups, p);
  if (runs) {
    runs->corrupt.assign(groups.size(), NodeOutputs{});
    runs->cleanMetric.assign(groups.size(), at::Tensor());
  }
  EapResult r;
  r.graph = edgeGraphOf(m.config());
  r.method = p.method;
  r.steps = p.method == EapMethod::Eap ? 1 : p.steps;
  r.edgeMask = edgeMask(r.graph);
  at::Tensor scores = at::zeros({r.graph.nForward(), r.graph.nBackward()}, at::TensorOptions().dtype(at::kDouble).device(m.device()));
  std::vector<at::Tensor> ldClean, ldCorrupt;  // [batch] per batch, groups' order
  const int64_t total = groupPromptCount(groups);
  int64_t done = 0;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const PatchGroup& g = groups[gi];
    const bool oneBatch = g.inputs.clean.size(0) <= p.maxBatchRows;  // its recordings are the whole group's: GroupRuns
    for (int64_t r0 = 0; r0 < g.inputs.clean.size(0); r0 += p.maxBatchRows) {
      if (ctx) ctx->step(done, total, toString(p.method));
      const int64_t n = std::min(p.maxBatchRows, g.inputs.clean.size(0) - r0);
      scoreBatch(m, r.graph, sliceRows(g.inputs, r0, n), p, scores, r, ldClean, ldCorrupt, ctx,
                 runs && oneBatch ? &runs->corrupt[gi] : nullptr);
      if (runs && oneBatch) runs->cleanMetric[gi] = ldClean.back();
      done += n;
    }
  }
  r.prompts = total;
  r.scores = (scores / static_cast<double>(total)).cpu();
  const at::Tensor order = groupsToDatasetOrder(groups);
  r.metricCleanPerPrompt = at::cat(ldClean).index_select(0, order);
  r.metricCorruptPerPrompt = at::cat(ldCorrupt).index_select(0, order);
  r.metricClean = r.metricCleanPerPrompt.to(at::kDouble).mean().item<double>();
  r.metricCorrupt = r.metricCorruptPerPrompt.to(at::kDouble).mean().item<double>();
  return r;
}

}  // namespace mechscope::analysis
