#pragma once
// Edge attribution patching (docs/metrics.md §12.6): EAP (Syed et al. 2023) and EAP-IG with interpolated
// input embeddings (Hanna et al. 2024). The score of edge u → v is
//   (1/N) Σ_prompts Σ_pos (a_corrupt(u) − a_clean(u)) · ∂LD/∂(input of v)
// with LD the logit difference (answer − wrong answer) and the gradient taken on the clean run (EAP) or
// averaged over `steps` runs whose embeddings interpolate from corrupt towards clean (EAP-IG).
#include <string>
#include <vector>

#include "analysis/eap/eap_gradients.hpp"
#include "analysis/eap/eap_graph.hpp"
#include "analysis/patching/patch_types.hpp"
#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

struct AnalysisPlugin;

/// EAP or EAP-IG.
enum class EapMethod { Eap, EapIg };

/// "eap", "eap-ig".
std::string toString(EapMethod m);
/// Parses toString's names; InputError naming --method otherwise.
EapMethod parseEapMethod(const std::string& name);

/// Options of edgeAttribution.
struct EapParams {
  EapMethod method = EapMethod::Eap;
  int steps = 30;               ///< EAP-IG interpolation points (α = k/steps, k = 0 … steps − 1)
  int64_t maxBatchRows = 32;    ///< rows per forward/backward: prompts per batch (a length group is split into such
                                ///< batches), and EAP-IG stacks ⌊rows / prompts⌋ interpolation steps in one pass
  int64_t positionSlice = 0;    ///< positions per slice when scores are accumulated (0: from a memory budget)
  AttentionPath attention = AttentionPath::Auto;  ///< the forwards' attention path (Auto keeps no [pos, key] pattern
                                                  ///< for the backward where a fused or chunked path serves)
};

/// Scores of every edge, averaged over the prompts.
struct EapResult {
  EdgeGraph graph;
  EapMethod method = EapMethod::Eap;
  int steps = 1;                      ///< gradient runs per batch (1 for EAP)
  at::Tensor scores;                  ///< [n_forward, n_backward] fp64 (0 where no edge)
  at::Tensor edgeMask;                ///< [n_forward, n_backward] bool: the edges
  at::Tensor metricCleanPerPrompt;    ///< [prompts] fp32, dataset order
  at::Tensor metricCorruptPerPrompt;  ///< [prompts] fp32, dataset order
  double metricClean = 0;             ///< mean LD of the clean prompts
  double metricCorrupt = 0;           ///< mean LD of the corrupted prompts
  int64_t prompts = 0;
  int forwards = 0;                   ///< forward passes made
  int backwards = 0;                  ///< backward passes made
};

/// The edge graph of `config` (any of the loaded families; grouped queries give kv-head k/v receivers).
EdgeGraph edgeGraphOf(const ModelConfig& config);

/// The [n_forward, n_backward] bool mask of the graph's edges.
at::Tensor edgeMask(const EdgeGraph& graph);

/// Checks `params` and that `groups` hold prompts; InputError before any compute.
void checkEapInputs(const HookedTransformer& model, const std::vector<PatchGroup>& groups, const EapParams& params);

/// EAP / EAP-IG over every length group (each split into batches of ≤ maxBatchRows prompts).
EapResult edgeAttribution(const HookedTransformer& model, const std::vector<PatchGroup>& groups, const EapParams& params,
                          const RunContext* ctx = nullptr);

// ---- Runs shared with the exact checks that follow (eap --check-top, --faithfulness; edge_patching.hpp) ----

/// What each length group's exact patching reuses instead of running its prompts again, indexed like the
/// groups: the corrupted run's node outputs (the patched forwards' sources) and the clean prompts' LD. An
/// entry left undefined (`corrupt[g].input`, `cleanMetric[g]`) is recorded by the first patching that needs it.
struct GroupRuns {
  std::vector<NodeOutputs> corrupt;     ///< per group: [prompts, …] (model dtype and device)
  std::vector<at::Tensor> cleanMetric;  ///< per group: [prompts] fp32 LD of the clean prompts
};

/// edgeAttribution that also fills `runs` (sized to the groups) for every group it ran as one batch (≤
/// maxBatchRows prompts), where its recordings are exactly what patching the group would record; a group
/// split into several batches is left to the patching.
EapResult edgeAttribution(const HookedTransformer& model, const std::vector<PatchGroup>& groups, const EapParams& params,
                          const RunContext* ctx, GroupRuns* runs);

/// The `eap` analysis plugin (eap_plugin.cpp).
AnalysisPlugin eapPlugin();

}  // namespace mechscope::analysis
