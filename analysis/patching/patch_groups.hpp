#pragma once
// Patching over prompts of several token lengths: each length group (toPatchGroups) runs as one batch,
// with no padding, so every prompt is computed as it would be alone; the groups' per-prompt metrics are
// then concatenated (back in dataset order) and the means, and so the normalised scores, are taken over
// every prompt, i.e. each group weighted by its prompt count. With one group the result is the group's.
#include <vector>

#include "analysis/patching/patch_types.hpp"
#include "analysis/patching/path_patching.hpp"
#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

struct AnalysisPlugin;

/// activationPatch on every group, combined. Per-position layouts index positions from the start; with
/// several lengths a cell averages the prompts that have that position (metricPatched is NaN elsewhere).
PatchResult activationPatchGroups(const HookedTransformer& model, const std::vector<PatchGroup>& groups,
                                  const PatchParams& params, const RunContext* ctx = nullptr);

/// attributionPatch on every group, combined as activationPatchGroups.
PatchResult attributionPatchGroups(const HookedTransformer& model, const std::vector<PatchGroup>& groups,
                                   const PatchParams& params, const RunContext* ctx = nullptr);

/// pathPatch on every group, combined (the senders are the same in every group).
PathPatchResult pathPatchGroups(const HookedTransformer& model, const std::vector<PatchGroup>& groups,
                                const PathPatchParams& params, const RunContext* ctx = nullptr);

/// One sweep result from the groups' results (same component and layout), prompts in dataset order.
PatchResult combinePatchResults(const std::vector<PatchResult>& parts, const std::vector<PatchGroup>& groups);

/// One path-patching result from the groups' results, prompts in dataset order.
PathPatchResult combinePathPatchResults(const std::vector<PathPatchResult>& parts, const std::vector<PatchGroup>& groups);

/// The permutation [prompts] int64 that puts the groups' concatenated rows in dataset order.
at::Tensor groupsToDatasetOrder(const std::vector<PatchGroup>& groups);

/// Total prompts over the groups.
int64_t groupPromptCount(const std::vector<PatchGroup>& groups);

/// The `patch` analysis plugin (activation, attribution and path patching over a dataset; patch_plugin.cpp).
AnalysisPlugin patchPlugin();

}  // namespace mechscope::analysis
