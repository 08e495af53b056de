#pragma once
// Overlap of two circuits (METRICS.md §4.5, §10): Jaccard |A∩B|/|A∪B| as the headline,
// |A∩B|/min(|A|,|B|), the shared / only-A / only-B heads, and a sweep over top-1/2/5/10 % per stage.
#include <nlohmann/json.hpp>
#include <vector>

#include "analysis/circuits/circuit_discovery.hpp"

namespace mechscope::analysis {

/// Overlap numbers of two head sets.
struct SetOverlap {
  double jaccard = 0;
  double overMin = 0;
  std::vector<HeadRef> shared, onlyA, onlyB;
};

/// One point of the threshold sweep.
struct SweepPoint {
  double percent = 0;
  size_t sizeA = 0, sizeB = 0;
  SetOverlap overlap;
};

/// Overlap result.
struct OverlapResult {
  SetOverlap headline;            ///< on the circuits' own head sets
  std::vector<SweepPoint> sweep;  ///< top-p % per stage re-selected from the stored stage effects
};

/// Jaccard, |∩|/min and the three lists of two head sets (0 when both are empty).
SetOverlap setOverlap(std::vector<HeadRef> a, std::vector<HeadRef> b);
/// Headline and sweep (percents default 1, 2, 5, 10). The sweep keeps each circuit's stages (their
/// receivers) and re-applies the selection rule with only the top-% changed.
OverlapResult circuitOverlap(const CircuitResult& a, const CircuitResult& b,
                             const std::vector<double>& percents = {1, 2, 5, 10});
/// JSON of an overlap result.
nlohmann::json toJson(const OverlapResult& r);

}  // namespace mechscope::analysis
