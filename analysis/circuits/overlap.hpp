#pragma once
// Overlap of two circuits (docs/causal-protocols.md): Jaccard |A∩B|/|A∪B| as the headline,
// |A∩B|/min(|A|,|B|), the shared / only-A / only-B heads, a sweep over top-1/2/5/10 % per stage, and
// the same counts over (stage, head) pairs, stage by stage (Merullo et al.'s "25/32 of the circuit is
// shared" counts each stage's top heads).
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

/// One stage's heads in both circuits.
struct StageOverlap {
  int stage = 1;
  SetOverlap overlap;
};

/// Overlap of the (stage, head) pairs: a head found at two stages counts twice.
struct StagePairOverlap {
  size_t sizeA = 0, sizeB = 0, shared = 0, unionSize = 0;
  double jaccard = 0, overMin = 0;
  std::vector<StageOverlap> stages;  ///< stage by stage, up to the longer circuit's last stage
};

/// Overlap result.
struct OverlapResult {
  SetOverlap headline;            ///< on the circuits' own head sets
  StagePairOverlap stagePairs;    ///< on the stages' selections
  std::vector<SweepPoint> sweep;  ///< top-p % per stage re-selected from the stored stage effects
};

/// The (stage, head) pair overlap of two circuits (stages' selections; without stages, each head at the
/// stage that found it).
StagePairOverlap stagePairOverlap(const CircuitResult& a, const CircuitResult& b);

/// Jaccard, |∩|/min and the three lists of two head sets (0 when both are empty).
SetOverlap setOverlap(std::vector<HeadRef> a, std::vector<HeadRef> b);
/// Headline and sweep (percents default 1, 2, 5, 10). The sweep keeps each circuit's stages (their
/// receivers) and re-applies the selection rule with only the top-% changed.
OverlapResult circuitOverlap(const CircuitResult& a, const CircuitResult& b,
                             const std::vector<double>& percents = {1, 2, 5, 10});
/// JSON of an overlap result.
nlohmann::json toJson(const OverlapResult& r);

/// The `overlap` analysis plugin (overlap_plugin.cpp): two `circuit --json` files, no model.
AnalysisPlugin overlapPlugin();

}  // namespace mechscope::analysis
