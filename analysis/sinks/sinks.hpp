#pragma once
// Attention sinks (METRICS.md §2, §10): per-head primary-sink score and sink rate from the probe's
// column sums; secondary sinks by hidden-state alignment with the primary sink inside the clipper
// window (resid_post of every layer), their lifetimes, creation layers and labels; at the creation
// layer the MLP output's cosine with BOS's and its ℓ2 norm; the sink-level histogram.
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/common/result_io.hpp"
#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

/// Settings of the sinks analysis.
struct SinksOptions {
  int64_t bosPosition = 0;       ///< b: primary-sink position (sink score column, hidden-state reference)
  double sinkThreshold = 0.3;    ///< ε of the sink rate (Gu et al. 2024)
  double cosineThreshold = 0.9;  ///< |cos(h_l[p], h_l[b])| above which p is a sink at layer l
  bool materialize = false;      ///< read hook_pattern instead of probing q/k
};

/// One detected sink candidate (lifetime ≥ 1 inside the clipper window).
struct SecondarySink {
  int64_t batch = 0;
  int64_t position = 0;
  int64_t tokenId = 0;
  int creationLayer = 0;    ///< first layer recorded
  int lifetime = 0;         ///< number of layers recorded
  std::string label;        ///< "bos_sink", "secondary" or "noise" (§2.1 step 5)
  double mlpCosine = 0;     ///< cos(mlp_out[l*][p], mlp_out[l*][b])
  double mlpNorm = 0;       ///< ‖mlp_out[l*][p]‖₂
  std::vector<int> layers;  ///< every recorded layer
};

/// What the sinks analysis finds.
struct SinksResult {
  at::Tensor sinkScore;  ///< [layer, head] fp64: mean over i > b of A[l,h,i,b], averaged over batch rows
  at::Tensor sinkRate;   ///< [layer] fp64: fraction of heads with sinkScore > ε (per row, averaged)
  std::vector<std::pair<int, int>> window;  ///< per batch row: clipper window [start, end)
  std::vector<SecondarySink> sinks;         ///< every candidate, in batch then position order
  int nLayers = 0;
};

/// Runs the analysis over `rows` (each a token sequence, BOS first; one forward each).
SinksResult runSinks(const HookedTransformer& model, const std::vector<std::vector<int64_t>>& rows,
                     const SinksOptions& options = {}, const RunContext* ctx = nullptr);

/// The documented JSON keys (docs/cli.md) and HDF5 arrays.
AnalysisResult sinksToResult(const SinksResult& result, const SinksOptions& options);

}  // namespace mechscope::analysis
