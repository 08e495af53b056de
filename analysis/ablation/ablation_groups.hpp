#pragma once
// Ablation over prompts of several token lengths: each length group runs as its own batch (mean and
// resample references are the group's, since positions must align) and the groups' per-prompt results
// are combined, back in dataset order, into the figures of every prompt.
#include <vector>

#include "analysis/ablation/ablation.hpp"
#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/result_io.hpp"
#include "analysis/patching/patch_types.hpp"

namespace mechscope::analysis {

/// One ablation result from the groups' results: per-prompt arrays in dataset order, means and
/// accuracies over every prompt (each group weighted by its prompt count).
AblationResult combineAblationResults(const std::vector<AblationResult>& parts, const std::vector<PatchGroup>& groups);

/// Writes how many prompts were analysed: "prompts" (all groups), "prompts_dropped" (unusable pairs) and
/// "prompt_lengths" ([{"length", "prompts"}] per token-length group).
void putPromptGroups(AnalysisResult& out, const std::vector<PatchGroup>& groups, int dropped);

/// Writes an ablation's before/after figures into `out.json` (metric, accuracies, per_prompt) and its
/// per-prompt arrays; the analyses add their own keys.
void putAblationSummary(AnalysisResult& out, const AblationResult& r);

/// The `ablate` analysis plugin (a head set, knockout, or every head alone over a dataset; ablation_plugin.cpp).
AnalysisPlugin ablatePlugin();

}  // namespace mechscope::analysis
