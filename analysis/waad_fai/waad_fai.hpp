#pragma once
// WAAD / FAI (preplan-and-anchor, METRICS.md §5, §10): head distance d(l,h) over response rows, the
// bottom/top-quantile local/global head split, per-token WAAD (local heads, window W) and FAI (global
// heads, horizon band), preplan/anchor token sets and peaks. One streaming pass per sequence.
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "analysis/common/result_io.hpp"
#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

/// Settings of WAAD/FAI.
struct WaadFaiOptions {
  int64_t window = 10;        ///< W of WAAD
  int64_t faiMin = 1;         ///< FAI horizon T(s) = {t : s + faiMin ≤ t ≤ s + faiMax}
  int64_t faiMax = std::numeric_limits<int64_t>::max();
  int64_t responseStart = 0;  ///< R: only query rows t ≥ R count
  double splitQuantile = 0.3;     ///< bottom/top fraction of heads by d(l,h)
  double tokenQuantile = 0.4;     ///< preplan/anchor top quantile
  double peakPercentile = 60.0;   ///< peaks: local maxima above this percentile
  bool middleLayers = false;      ///< heads only from five evenly spaced layers of ⌊L/3⌋..⌊2L/3⌋
  bool materialize = false;
};

/// What WAAD/FAI finds.
struct WaadFaiResult {
  at::Tensor headDistance;  ///< [layer, head] fp64, averaged over batch rows
  std::vector<std::pair<int, int>> localHeads, globalHeads;  ///< sorted (layer, head)
  std::vector<int> layers;                                   ///< layers whose heads compete
  std::vector<std::vector<double>> waad, fai;                ///< [batch][pos]
  std::vector<std::vector<int64_t>> preplan, anchor, waadPeaks, faiPeaks;  ///< [batch][...] positions
};

/// Runs WAAD/FAI over `rows` (one forward each).
WaadFaiResult runWaadFai(const HookedTransformer& model, const std::vector<std::vector<int64_t>>& rows,
                         const WaadFaiOptions& options = {}, const RunContext* ctx = nullptr);

/// The documented JSON keys and HDF5 arrays.
AnalysisResult waadFaiToResult(const WaadFaiResult& result, const WaadFaiOptions& options);

}  // namespace mechscope::analysis
