#include "analysis/common/registry.hpp"

namespace mechscope::analysis {

const std::vector<AnalysisInfo>& analysisRegistry() {
  // `available` flips to true as each analysis lands; `list` and the demo report the rest as missing.
  static const std::vector<AnalysisInfo> table = {
      {"sinks", "primary/secondary attention sinks: sink scores, sink rate, lifetimes, levels", true},
      {"waad-fai", "preplan/anchor metrics: head distance, local/global heads, WAAD and FAI per token", true},
      {"constraint-attention", "attention mass on constraint spans per layer and answer step (alpha, beta)", true},
      {"retrieval", "retrieval-head detection by needle-in-a-haystack decoding", true},
      {"ablate", "head ablation: zero, mean, resample, uniform attention, attention forcing", true},
      {"patch", "activation patching (batched) and attribution patching", true},
      {"circuit", "IOI / Colored Objects circuit discovery by iterative path patching", true},
      {"overlap", "overlap of two circuits: Jaccard, |A&B|/min, threshold sweep", true},
      {"attention-influence", "per-token loss increase when a head set (e.g. retrieval heads) is masked", true},
  };
  return table;
}

}  // namespace mechscope::analysis
