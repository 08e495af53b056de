#pragma once
// WAAD / FAI (preplan-and-anchor, docs/metrics.md §5, §10): head distance d(l,h) over response rows, the
// bottom/top-quantile local/global head split, per-token WAAD (local heads, window W) and FAI (global
// heads, horizon band), preplan/anchor token sets and peaks; for the paper's Table 2 the per-token
// predictive entropy and realised-token log-probability, receiver heads (kurtosis of each head's
// column mass, Bogdan et al. 2025) with their FAI, and the peak statistics against shuffled-peak
// baselines. One streaming pass per sequence; each row may have its own response start.
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "core/common/head_ref.hpp"
#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/result_io.hpp"
#include "analysis/waad_fai/rhythm_stats.hpp"
#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

/// Settings of WAAD/FAI.
struct WaadFaiOptions {
  int64_t window = 10;        ///< W of WAAD
  int64_t faiMin = 1;         ///< FAI horizon T(s) = {t : s + faiMin ≤ t ≤ s + faiMax}
  int64_t faiMax = std::numeric_limits<int64_t>::max();
  int64_t responseStart = 0;  ///< R of every row (unless responseStarts): only query rows t ≥ R count
  std::vector<int64_t> responseStarts;  ///< non-empty: R per row (one entry per row)
  double splitQuantile = 0.3;     ///< bottom/top fraction of heads by d(l,h)
  double tokenQuantile = 0.4;     ///< preplan/anchor top quantile
  double peakPercentile = 60.0;   ///< peaks: local maxima above this percentile
  int receiverHeads = 20;         ///< top-k heads by column-mass kurtosis (Bogdan et al.'s default 20)
  int64_t peakLag = 10;           ///< "FAI peak at/after a WAAD peak": an FAI peak within [t, t + lag]
  bool middleLayers = false;      ///< heads only from five evenly spaced layers of ⌊L/3⌋..⌊2L/3⌋
  bool predictions = true;        ///< per-token entropy and log-probability (unembeds every position, in chunks)
  bool materialize = false;
};

/// Table 2 of the paper, pooled over rows (token-weighted).
struct RhythmSummary {
  double entropyMean = 0;          ///< mean predictive entropy over response tokens t ≥ max(R, 1)
  double entropyAtWaadPeaks = 0;   ///< … over WAAD peaks only
  int64_t entropyTokens = 0, waadPeakTokens = 0;
  PeakMatch receiverGlobal;        ///< receiver-FAI peaks that are global-FAI peaks
  PeakMatch faiAfterWaad;          ///< WAAD peaks followed by an FAI peak within the lag
};

/// What WAAD/FAI finds.
struct WaadFaiResult {
  at::Tensor headDistance;  ///< [layer, head] fp64, averaged over batch rows
  std::vector<HeadRef> localHeads, globalHeads;  ///< sorted (layer, head)
  std::vector<int> layers;                                   ///< layers whose heads compete
  std::vector<int64_t> responseStarts;                       ///< [batch] R of each row
  std::vector<std::vector<double>> waad, fai;                ///< [batch][pos]
  std::vector<std::vector<int64_t>> preplan, anchor, waadPeaks, faiPeaks;  ///< [batch][...] positions
  std::vector<std::vector<double>> entropy, logProb;  ///< [batch][pos] (NaN at t = 0; empty without predictions)
  at::Tensor receiverKurtosis;  ///< [layer, head] fp64: mean over rows of the excess kurtosis of the FAI column means (NaN: undefined)
  std::vector<HeadRef> receiverHeads;       ///< top receiverHeads by kurtosis, in descending kurtosis
  std::vector<std::vector<double>> receiverFai;         ///< [batch][pos] FAI over the receiver heads
  std::vector<std::vector<int64_t>> receiverFaiPeaks;   ///< [batch][...]
  RhythmSummary summary;
};

/// Runs WAAD/FAI over `rows` (one forward each).
WaadFaiResult runWaadFai(const HookedTransformer& model, const std::vector<std::vector<int64_t>>& rows,
                         const WaadFaiOptions& options = {}, const RunContext* ctx = nullptr);

/// The documented JSON keys and HDF5 arrays.
AnalysisResult waadFaiToResult(const WaadFaiResult& result, const WaadFaiOptions& options);

/// The plugin (waad_fai_plugin.cpp): `mechscope-cli waad-fai`, its GUI panel and batch keys.
AnalysisPlugin waadFaiPlugin();

}  // namespace mechscope::analysis
