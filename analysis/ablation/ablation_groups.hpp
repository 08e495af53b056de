#pragma once
// Ablation over prompts of several token lengths: each length group runs as its own batch (mean and
// resample references are the group's, since positions must align) and the groups' per-prompt results
// are combined, back in dataset order, into the figures of every prompt.
#include <vector>

#include "analysis/ablation/ablation.hpp"
#include "analysis/patching/patch_types.hpp"

namespace mechscope::analysis {

/// One ablation result from the groups' results: per-prompt arrays in dataset order, means and
/// accuracies over every prompt (each group weighted by its prompt count).
AblationResult combineAblationResults(const std::vector<AblationResult>& parts, const std::vector<PatchGroup>& groups);

}  // namespace mechscope::analysis
