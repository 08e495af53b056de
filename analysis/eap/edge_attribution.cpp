// EAP and EAP-IG over a dataset's length groups (edge_attribution.hpp).
#include "analysis/eap/edge_attribution.hpp"

#include <ATen/ATen.h>

#include <fmt/format.h>

#include "analysis/eap/eap_gradients.hpp"
#include "analysis/patching/patch_groups.hpp"
#include "core/common/errors.hpp"
#include "core/model/memory_estimate.hpp"

namespace mechscope::analysis {
namespace {

/// The dtype scores are formed in: fp32, or fp64 for an fp64 model (reference runs).
at::ScalarType scoreType(const HookedTransformer& m) { return m.dtype() == at::kDouble ? at::kDouble : at::kFloat; }

/// a_corrupt − a_clean of every source node: [batch, pos, n_forward, d_model] in scoreType. A head's output is
/// z_h · W_O[h] (hook_result's value without materialising it per run); b_O belongs to no head and cancels.
at::Tensor activationDifference(const HookedTransformer& m, const NodeOutputs& corrupt, const NodeOutputs& clean) {
  const ModelConfig& c = m.config();
  const at::ScalarType st = scoreType(m);
  std::vector<at::Tensor> parts{(corrupt.input.to(st) - clean.input.to(st)).unsqueeze(2)};
  for (int l = 0; l < c.nLayers; ++l) {
    const auto li = static_cast<size_t>(l);
    const at::Tensor dz = corrupt.z[li].to(st) - clean.z[li].to(st);  // [batch, pos, head, d_head]
    parts.push_back(headOutputs(m, l, dz, st));                        // [batch, pos, head, d_model]
    parts.push_back((corrupt.mlp[li].to(st) - clean.mlp[li].to(st)).unsqueeze(2));    // [batch, pos, 1, d_model]
  }
  return at::cat(parts, 2);
}

/// scores [n_forward, n_backward] fp64 += weight · Σ_{batch,pos} Δa[source] · ∂LD/∂input[receiver] over the
/// graph's edges; Δa [batch, pos, n_forward, d_model] (fp32 or fp64).
void accumulateScores(at::Tensor& scores, const EdgeGraph& G, const at::Tensor& delta, const ReceiverGradients& g, double weight) {
  for (int l = 0; l < G.nLayers; ++l) {
    const auto li = static_cast<size_t>(l);
    const int64_t b0 = G.layerBackward(l), nHeadRecv = G.perLayerReceivers() - 1;
    const at::Tensor heads = at::cat({g.q[li], g.k[li], g.v[li]}, 2).to(delta.scalar_type());  // [batch, pos, H + 2K, d_model]
    const int64_t prevHeads = G.prevForward(b0);
    scores.narrow(0, 0, prevHeads).narrow(1, b0, nHeadRecv) +=
        at::einsum("bpfd,bpgd->fg", {delta.narrow(2, 0, prevHeads), heads}).to(at::kDouble) * weight;
    const int64_t bm = G.mlpBackward(l), prevMlp = G.prevForward(bm);
    scores.narrow(0, 0, prevMlp).select(1, bm) +=
        at::einsum("bpfd,bpd->f", {delta.narrow(2, 0, prevMlp), g.mlp[li].to(delta.scalar_type())}).to(at::kDouble) * weight;
  }
  scores.select(1, G.logitsBackward()) += at::einsum("bpfd,bpd->f", {delta, g.logits.to(delta.scalar_type())}).to(at::kDouble) * weight;
}

/// Each gradient [steps·batch, …] (step-major) → Σ over the steps [batch, …] in `type`.
void sumOverSteps(ReceiverGradients& g, int64_t steps, at::ScalarType type) {
  auto sum = [&](at::Tensor& t) {
    std::vector<int64_t> shape{steps, t.size(0) / steps};
    shape.insert(shape.end(), t.sizes().begin() + 1, t.sizes().end());
    t = t.to(type).view(shape).sum(0);
  };
  for (auto* list : {&g.q, &g.k, &g.v, &g.mlp})
    for (at::Tensor& t : *list) sum(t);
  sum(g.logits);
}

/// One batch: adds its prompt-summed scores to `scores`, its LDs to the metric lists.
void scoreBatch(const HookedTransformer& m, const EdgeGraph& G, const PatchInputs& in, const EapParams& p, at::Tensor& scores,
                EapResult& r, std::vector<at::Tensor>& ldClean, std::vector<at::Tensor>& ldCorrupt, const RunContext* ctx) {
  const NodeOutputs corrupt = recordNodeOutputs(m, in.corrupt, in.correct, in.incorrect, ctx);
  ++r.forwards;
  ldCorrupt.push_back(corrupt.metric.cpu());
  if (p.method == EapMethod::Eap) {
    NodeOutputs clean;
    const ReceiverGradients g = receiverGradients(m, in.clean, in.correct, in.incorrect, {}, &clean, ctx);
    ++r.forwards;
    ++r.backwards;
    ldClean.push_back(clean.metric.cpu());
    accumulateScores(scores, G, activationDifference(m, corrupt, clean), g, 1.0);
    return;
  }
  const NodeOutputs clean = recordNodeOutputs(m, in.clean, in.correct, in.incorrect, ctx);
  ++r.forwards;
  ldClean.push_back(clean.metric.cpu());
  const at::Tensor delta = activationDifference(m, corrupt, clean);  // [batch, pos, n_forward, d_model]
  // Hanna et al.'s code (eap/attribute.py, get_scores_eap_ig): k = 0 … steps − 1, α = k / steps, so the
  // corrupt end is a point and the clean end is not (a left Riemann sum); docs/metrics.md §12.6 says why.
  // Several steps share one forward/backward (stacked on the batch, step-major, ≤ maxBatchRows rows): the
  // rows do not interact, and the score is linear in the gradient, so each pass's gradients are summed over
  // its steps before they meet Δa.
  const int64_t B = in.clean.size(0);
  const int64_t perPass = std::max<int64_t>(1, p.maxBatchRows / B);
  for (int k0 = 0; k0 < p.steps; k0 += static_cast<int>(perPass)) {
    if (ctx) ctx->check();
    const int64_t s = std::min<int64_t>(perPass, p.steps - k0);
    std::vector<at::Tensor> inputs;
    for (int64_t k = k0; k < k0 + s; ++k) {
      const double alpha = static_cast<double>(k) / p.steps;
      inputs.push_back(corrupt.input + alpha * (clean.input - corrupt.input));  // [batch, pos, d_model]
    }
    ReceiverGradients g = receiverGradients(m, in.clean.repeat({s, 1}), in.correct.repeat({s}), in.incorrect.repeat({s}),
                                            at::cat(inputs, 0), nullptr, ctx);  // [steps·batch, …]
    ++r.forwards;
    ++r.backwards;
    sumOverSteps(g, s, delta.scalar_type());
    accumulateScores(scores, G, delta, g, 1.0 / p.steps);
  }
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
  // One batch keeps, until its backward: every layer's forward working set (autograd's saved tensors), plus
  // Δa [rows, pos, n_forward, d_model] and the receivers' gradients [rows, pos, n_backward, d_model] in fp32.
  // Refused before compute when that exceeds the memory this process can use (CPU models; on CUDA the
  // allocator reports an out-of-memory itself).
  if (m.device().is_cuda()) return;
  std::string source;
  const int64_t avail = availableMemoryBytes(&source);
  if (avail < 0) return;
  const EdgeGraph G = edgeGraphOf(m.config());
  for (const auto& g : groups) {
    ForwardMemoryOptions fo;
    const int64_t prompts = std::min<int64_t>(g.inputs.clean.size(0), p.maxBatchRows);
    fo.batch = p.method == EapMethod::EapIg ? std::max(prompts, std::min<int64_t>(p.steps, p.maxBatchRows / prompts) * prompts) : prompts;
    fo.positions = g.inputs.clean.size(1);
    fo.elementBytes = static_cast<int64_t>(at::elementSize(m.dtype()));
    fo.fullLogits = false;
    const MemoryEstimate e = estimateForwardMemory(m.config(), fo);
    const int64_t saved = e.layer * m.config().nLayers;
    const int64_t scores = fo.batch * fo.positions * (G.nForward() + G.nBackward()) * m.config().dModel * 4;
    const int64_t total = e.weights + saved + e.retained + scores;
    if (total > avail)
      throw InputError(fmt::format("eap: one pass of {} rows × {} positions needs ≈ {} of memory (weights {} + the layers "
                                   "autograd keeps {} + activation differences and gradients {}) but only {} is available ({}); "
                                   "lower --max-batch-rows",
                                   fo.batch, fo.positions, formatBytes(total), formatBytes(e.weights), formatBytes(saved),
                                   formatBytes(scores), formatBytes(avail), source));
  }
}

EapResult edgeAttribution(const HookedTransformer& m, const std::vector<PatchGroup>& groups, const EapParams& p, const RunContext* ctx) {
  checkEapInputs(m, groups, p);
  EapResult r;
  r.graph = edgeGraphOf(m.config());
  r.method = p.method;
  r.steps = p.method == EapMethod::Eap ? 1 : p.steps;
  r.edgeMask = edgeMask(r.graph);
  at::Tensor scores = at::zeros({r.graph.nForward(), r.graph.nBackward()}, at::TensorOptions().dtype(at::kDouble).device(m.device()));
  std::vector<at::Tensor> ldClean, ldCorrupt;  // [batch] per batch, groups' order
  const int64_t total = groupPromptCount(groups);
  int64_t done = 0;
  for (const auto& g : groups) {
    for (int64_t r0 = 0; r0 < g.inputs.clean.size(0); r0 += p.maxBatchRows) {
      if (ctx) ctx->step(done, total, toString(p.method));
      const int64_t n = std::min(p.maxBatchRows, g.inputs.clean.size(0) - r0);
      scoreBatch(m, r.graph, sliceRows(g.inputs, r0, n), p, scores, r, ldClean, ldCorrupt, ctx);
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
