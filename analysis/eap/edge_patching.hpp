#pragma once
// Exact edge patching (docs/metrics.md §12.7): forwards of the clean prompts
// in which chosen edges u → v carry the corrupted run's activation of u into v's input, and only there.
// A receiver's input is the residual sum only it reads (a head's q, k or v input; an MLP's input; the
// final residual the logits read), so patching an edge adds (a_corrupt(u) − a_current(u)) to that input
// alone: the head's projection (ln1 → W_Q/W_K/W_V → qk-norm) or the MLP's ln2 is recomputed from it, and
// nothing else in the residual stream changes. With every edge patched the run is the corrupted run; with
// none, the clean run.
//   - patchEdges: each edge alone (the exact counterpart of its EAP score), many edges per batched forward.
//   - faithfulnessCurve / faithfulnessAtFractions: the circuit of the n highest-scoring edges kept clean and
//     every other edge patched, for several n: MIB's faithfulness (m(C) − m(∅)) / (m(full) − m(∅)) and its
//     CPR / CMD areas; faithfulnessAtFractions is MIB's sweep exactly (evaluate_area_under_curve), checked
//     against a port of the official code (EvaluateGraphReference).
#include <vector>

#include "analysis/eap/eap_graph.hpp"
#include "analysis/patching/patch_types.hpp"
#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

struct GroupRuns;  // edge_attribution.hpp

/// One edge: its source (forward index) and its receiver (backward index) in the EdgeGraph.
struct EdgeRef {
  int64_t forward = 0, backward = 0;
};

/// Every edge of the graph as a flat index (forward · n_backward + backward) into a [n_forward, n_backward]
/// score matrix, largest |score| first, ties by index: [edges] int64 (CPU).
at::Tensor edgesByScore(const EdgeGraph& graph, const at::Tensor& scores);

/// The edge named as an `eap` document names it: source "input" / "a{l}.h{h}" / "m{l}", receiver node
/// "a{l}.h{h}" / "a{l}.kv{j}" / "m{l}" / "logits" and input "q", "k", "v" or "-". InputError naming the
/// three when the graph has no such edge.
EdgeRef edgeByName(const EdgeGraph& graph, const std::string& upstream, const std::string& downstream, const std::string& receiver);

/// Exact single-edge patching of several edges.
struct EdgePatchResult {
  at::Tensor metricPatched;  ///< [edges, prompts] fp32 LD with that edge patched, dataset order
  at::Tensor effect;         ///< [edges] fp64 mean over prompts of LD_patched − LD_clean (what EAP approximates)
  double metricClean = 0, metricCorrupt = 0;
  int forwards = 0;          ///< forward passes made (batched)
};

/// Every edge of `edges` patched alone, `maxBatchRows` rows (edges × prompts) per forward, over the groups.
/// `runs`, when given, supplies each group's corrupted node outputs and clean LD where recorded (edgeAttribution
/// fills it) and receives those it had to record, so nothing is run twice. InputError for an edge that is not
/// in the model's graph.
EdgePatchResult patchEdges(const HookedTransformer& model, const std::vector<PatchGroup>& groups, const std::vector<EdgeRef>& edges,
                           int64_t maxBatchRows = 64, const RunContext* ctx = nullptr, GroupRuns* runs = nullptr);

/// The circuit `inGraph` [n_forward, n_backward] bool made connected as the official EAP-IG code's
/// Graph.prune: repeatedly drop nodes without an incoming edge (the input always has one) or without an
/// outgoing edge, and edges whose source or receiver's node was dropped (the logits always stay), until
/// nothing changes. A head's node owns its q receiver and its (kv) head's k and v receivers.
at::Tensor pruneCircuit(const EdgeGraph& graph, at::Tensor inGraph);

/// The faithfulness curve of circuits made of the highest-scoring edges.
struct FaithfulnessCurve {
  std::vector<int64_t> edgesKept;  ///< circuit sizes (the top-n edges by |score|), ascending
  std::vector<int64_t> edgesAfterPruning;  ///< edges left in each circuit after pruneCircuit (= edgesKept without pruning)
  std::vector<double> fraction;    ///< the x axis: edgesKept / edges (faithfulnessCurve) or the fraction asked for (faithfulnessAtFractions)
  std::vector<double> metric;      ///< mean LD of the circuit run at each size
  std::vector<double> faithfulness;  ///< (metric − metricCorrupt) / (metricClean − metricCorrupt)
  double metricClean = 0, metricCorrupt = 0;
  double cpr = 0;  ///< area under faithfulness over the fraction axis: trapezoids between the points, none before the first
  double cmd = 0;  ///< area under |1 − faithfulness| over the fraction axis, the same way
  double average = 0;  ///< mean faithfulness over the points (MIB's "average")
  int forwards = 0;
};

/// Runs the circuit of the `n` edges of largest |score| (scores [n_forward, n_backward], non-edges ignored;
/// ties by index) for each n of `sizes` (clamped to the edge count, sorted, duplicates dropped), pruned
/// (pruneCircuit) unless `prune` is false, as the official code's apply_topn; every edge outside the
/// circuit carries the corrupted activation. The x axis is n / edges. `runs` as patchEdges'. InputError for a
/// score matrix of the wrong shape.
FaithfulnessCurve faithfulnessCurve(const HookedTransformer& model, const std::vector<PatchGroup>& groups, const at::Tensor& scores,
                                    std::vector<int64_t> sizes, int64_t maxBatchRows = 64, const RunContext* ctx = nullptr,
                                    bool prune = true, GroupRuns* runs = nullptr);

/// MIB's sweep: 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50 and 100 % of the edges (MIB-circuit-track's
/// evaluate_area_under_curve percentages).
std::vector<double> mibFractions();

/// MIB's faithfulness curve: for each fraction f (sorted ascending) the pruned circuit of ⌊f · edges⌋ edges
/// (Python's int(pct * n_edges)), on the x axis at f itself; CPR / CMD are trapezoids between these
/// points only (no point at 0), as MIB computes area_under / area_from_1. `runs` as patchEdges'. InputError
/// for a fraction outside [0, 1] or a score matrix of the wrong shape.
FaithfulnessCurve faithfulnessAtFractions(const HookedTransformer& model, const std::vector<PatchGroup>& groups, const at::Tensor& scores,
                                          std::vector<double> fractions, int64_t maxBatchRows = 64, const RunContext* ctx = nullptr,
                                          GroupRuns* runs = nullptr);

/// The LD of the clean prompts of `in` [batch, pos] with the edges of each variant patched: `patched`
/// [variants, n_forward, n_backward] (1 = the edge carries the corrupted activation); rows are variant-major
/// (variant v's prompts at rows v·batch …). Returns [variants, batch] fp32. The building block of both.
/// The sources' differences a_corrupt − a_current are taken once, as the forward produces them, into
/// per-receiver running sums (a receiver with every source patched reads one shared prefix sum) or, when
/// the variants mix more receivers than there are sources, one stack of them: each receiver costs its own
/// sources once (docs/metrics.md §12.7, cost).
at::Tensor runPatchedVariants(const HookedTransformer& model, const PatchInputs& in, const at::Tensor& patched,
                              const RunContext* ctx = nullptr);

}  // namespace mechscope::analysis
