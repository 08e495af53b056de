#pragma once
// Attention intervention (Merullo et al.'s repair of Colored Objects; docs/causal-protocols.md): chosen heads'
// final-position attention is forced onto chosen key positions (each prompt's incorrect-answer positions,
// or every position holding one of given token ids), and accuracy and logit difference are reported
// before and after. A plugin: `mechscope-cli intervene`, its GUI panel and batch keys derive from its table.
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/datasets.hpp"

namespace mechscope::analysis {

/// Which key positions the final row is forced onto.
struct InterventionTarget {
  bool ontoIncorrect = false;    ///< each prompt's incorrect-role positions (else the incorrect token's positions)
  std::vector<int64_t> ontoIds;  ///< or every position holding one of these ids
  bool excludeAnswer = false;    ///< with ontoIds: skip positions holding the correct answer
};

/// The key positions of prompt `p` (sorted; the last position never counts; empty when none).
std::vector<int64_t> interventionKeys(const CausalPrompt& p, const InterventionTarget& target);

/// The plugin (heads, onto, onto_ids, exclude_answer).
AnalysisPlugin interventionPlugin();

}  // namespace mechscope::analysis
