#include "analysis/ablation/ablation_groups.hpp"

#include <ATen/ATen.h>

#include <cmath>

#include "analysis/patching/patch_groups.hpp"
#include "core/common/errors.hpp"

namespace mechscope::analysis {

AblationResult combineAblationResults(const std::vector<AblationResult>& parts, const std::vector<PatchGroup>& groups) {
  if (groups.empty() || parts.size() != groups.size()) throw Error("ablation: one result per prompt group expected");
  if (parts.size() == 1) return parts[0];
  const at::Tensor order = groupsToDatasetOrder(groups);  // [prompts]
  std::vector<at::Tensor> before, after, probBefore, probAfter;
  double correctBefore = 0, correctAfter = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    before.push_back(parts[i].perPromptBefore);
    after.push_back(parts[i].perPromptAfter);
    probBefore.push_back(parts[i].answerProbBefore);
    probAfter.push_back(parts[i].answerProbAfter);
    // A group's accuracy × its size is its count of correct prompts (rounded back to the integer it was).
    const auto n = static_cast<double>(groups[i].inputs.clean.size(0));
    correctBefore += std::round(parts[i].accuracyBefore * n);
    correctAfter += std::round(parts[i].accuracyAfter * n);
  }
  AblationResult r;
  r.perPromptBefore = at::cat(before).index_select(0, order);  // [prompts]
  r.perPromptAfter = at::cat(after).index_select(0, order);    // [prompts]
  r.metricBefore = r.perPromptBefore.to(at::kDouble).mean().item<double>();
  r.metricAfter = r.perPromptAfter.to(at::kDouble).mean().item<double>();
  r.answerProbBefore = at::cat(probBefore).index_select(0, order);  // [prompts]
  r.answerProbAfter = at::cat(probAfter).index_select(0, order);    // [prompts]
  r.aboveBefore = (r.perPromptBefore > 0).to(at::kDouble).mean().item<double>();
  r.aboveAfter = (r.perPromptAfter > 0).to(at::kDouble).mean().item<double>();
  const auto total = static_cast<double>(groupPromptCount(groups));
  r.accuracyBefore = correctBefore / total;
  r.accuracyAfter = correctAfter / total;
  r.ablatedHeads = parts[0].ablatedHeads;
  return r;
}

}  // namespace mechscope::analysis
