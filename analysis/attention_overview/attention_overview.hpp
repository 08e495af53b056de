#pragma once
// Attention overview: per-head statistics of the attention patterns of one forward pass — the mass on
// the first token (the sink score of docs/metrics.md §2 with the first token as the sink), the mean
// query–key distance, and the mean entropy of each query's attention — plus the first-token mass of every
// query averaged over heads. The first analysis written in the plugin shape (analysis_plugin.hpp): the
// CLI's `attention-overview`, the GUI's Overview panel and batch plans all run this code.
#include <cstdint>
#include <vector>

#include "analysis/common/analysis_plugin.hpp"
#include "core/common/tensor.hpp"

namespace mechscope::analysis {

/// Statistics of one prompt.
struct AttentionOverview {
  at::Tensor firstTokenMass;  ///< [layer, head] mean over queries q ≥ skip of A[q, 0]
  at::Tensor meanDistance;    ///< [layer, head] mean over queries of Σ_k A[q, k]·(q − k)
  at::Tensor meanEntropy;     ///< [layer, head] mean over queries of −Σ_k A[q, k] log A[q, k] (nats)
  at::Tensor perQueryFirstTokenMass;  ///< [pos] A[q, 0] averaged over layers and heads (NaN for q < skip)
};

/// The overview of `tokens` [pos] (one prompt); queries 0..skip-1 are left out (InputError unless 0 ≤ skip < pos).
AttentionOverview attentionOverview(const HookedTransformer& model, const std::vector<int64_t>& tokens, int64_t skipQueries,
                                    const RunContext* ctx = nullptr);

/// The plugin: table entry (parameter skip_queries) and run over every prompt (grids averaged over prompts).
AnalysisPlugin attentionOverviewPlugin();

}  // namespace mechscope::analysis
