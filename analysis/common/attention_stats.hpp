#pragma once
// The streaming attention-statistics driver shared by sinks, WAAD/FAI, constraint attention and
// retrieval heads: one forward pass per sequence; each layer's q/k are handed to the AttentionProbe
// inside the hook (or, with `materialize`, the layer's hook_pattern to statsFromPattern), so the
// forward never holds a [head, n, n] pattern unless asked.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/common/head_ref.hpp"
#include "core/common/run_context.hpp"
#include "core/common/tensor.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/probe/attention_probe.hpp"

namespace mechscope::analysis {

/// Called once per layer with that layer's statistics for the (single) sequence.
using LayerStatsFn = std::function<void(int layer, const ProbeResult& stats)>;

/// How to run the statistics pass.
struct AttentionStatsOptions {
  bool materialize = false;          ///< read hook_pattern (explicit path) instead of probing q/k
  int64_t tileQ = 512;               ///< probe tiles
  int64_t tileK = 2048;
  /// Optional per-layer row normalisers [head, pos] of an earlier probe of the same ids and request start
  /// (ProbeResult::rowLse); an undefined entry is computed as usual. Not owned.
  const std::vector<at::Tensor>* rowLse = nullptr;
  /// Optional: filled with each layer's blocks.{l}.hook_resid_pre [1, pos, d_model] during this pass, for a later
  /// pass over the same ids (residPre). Not owned.
  std::vector<at::Tensor>* keepResidPre = nullptr;
  /// Optional per-layer residuals [1, pos, d_model] kept by an earlier pass over the same ids (keepResidPre): each
  /// layer's hook_resid_pre is replaced by its kept one and the forward computes only queries and keys
  /// (ForwardOptions::queriesAndKeysOnly) — no attention, MLP or logits, the same q/k bit for bit. Not owned.
  const std::vector<at::Tensor>* residPre = nullptr;
};

/// Runs `model` on one sequence `ids` [pos] (no padding) and calls `onLayer` with the statistics of
/// `request` per layer. `extra` hooks (e.g. resid_post readers) run in the same pass; they must not
/// hook attention internals unless `materialize`. Returns the forward result (logits of the last position; none
/// with options.residPre).
ForwardResult runAttentionStats(const HookedTransformer& model, const std::vector<int64_t>& ids, const ProbeRequest& request,
                                const LayerStatsFn& onLayer, const AttentionStatsOptions& options = {},
                                const HookSet* extra = nullptr, const RunContext* ctx = nullptr);

/// Adds probe hooks to `hooks` for the layers of `model` (q/k sites: hook_rot_q/k for rotary models,
/// else hook_q/k): at each firing, row b of the batch is probed with `request` (queryOffset = keys −
/// queries) and `onLayer` called. Used by runAttentionStats and by decoding loops.
void addProbeHooks(HookSet& hooks, const HookedTransformer& model, const ProbeRequest& request, const LayerStatsFn& onLayer,
                   const AttentionStatsOptions& options = {}, const RunContext* ctx = nullptr);

/// Hooks that make the listed heads ((layer, head) pairs) attend uniformly over their visible keys
/// (docs/metrics.md §1.3): the head's query is zeroed at hook_q, so every score is 0 before the mask.
void addUniformHeadHooks(HookSet& hooks, const HookedTransformer& model, const std::vector<HeadRef>& heads);

/// The positions (0-based) that hold the top fraction `q` of `values` (⌈q·n⌉ entries; ties to the
/// lower position), sorted ascending; only positions ≥ `start` compete.
std::vector<int64_t> topQuantilePositions(const std::vector<double>& values, double q, int64_t start = 0);

/// Local maxima (v[t] > v[t−1] and v[t] ≥ v[t+1]; edges compare their one neighbour) whose value is
/// above the `percentile` (0..100, linear interpolation as numpy) of values[start..]; positions ≥ start.
std::vector<int64_t> peakPositions(const std::vector<double>& values, double percentile, int64_t start = 0);

}  // namespace mechscope::analysis
