#pragma once
// The statistics of the preplan-and-anchor paper's Table 2 that compare token sets, as plain
// functions on per-token vectors: column-mass kurtosis (receiver heads, Bogdan et al. 2025), peak
// co-occurrence and "FAI peak at/after a WAAD peak", each with its shuffled-peak baseline taken as
// the exact expectation over uniformly random placements (no random numbers, so runs are repeatable).
#include <cstdint>
#include <vector>

#include "core/common/tensor.hpp"

namespace mechscope::analysis {

/// Fisher (excess), biased kurtosis m4/m2² − 3 of the finite entries of each row of `v` [..., m] over its last dim
/// (scipy.stats.kurtosis with fisher=True, bias=True, nan_policy="omit"), in fp64 on v's device → [...]; NaN where a
/// row has fewer than 2 finite entries or m2 = 0. One call for every head of a layer stack: no per-head host copies.
at::Tensor excessKurtosis(const at::Tensor& v);

/// A hit count and its expectation under shuffled peaks, over one or more rows (sums add up).
struct PeakMatch {
  double hits = 0;      ///< events that matched
  double expected = 0;  ///< expected matches with the second peak set placed uniformly at random
  int64_t events = 0;   ///< events counted (the denominator of both rates)
};

/// For each peak in `a`: is it also a peak in `b`? Expected: |b| / N per event, N = response positions
/// (a uniformly random |b|-subset of the N positions contains a given position with that probability).
PeakMatch peakCoOccurrence(const std::vector<int64_t>& a, const std::vector<int64_t>& b, int64_t nPositions);

/// For each WAAD peak t: is there an FAI peak s with t ≤ s ≤ min(t + lag, last)? Expected: the chance
/// that |fai| positions drawn without replacement from [first, last] hit that window,
/// 1 − C(N − m, k) / C(N, k) with m the window's length.
PeakMatch faiAfterWaad(const std::vector<int64_t>& waadPeaks, const std::vector<int64_t>& faiPeaks, int64_t lag, int64_t first,
                       int64_t last);

}  // namespace mechscope::analysis
