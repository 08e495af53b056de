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

void putPromptGroups(AnalysisResult& out, const std::vector<PatchGroup>& groups, int dropped) {
  out.json["prompt_lengths"] = nlohmann::json::array();
  int64_t total = 0;
  for (const auto& g : groups) {
    total += g.inputs.clean.size(0);
    out.json["prompt_lengths"].push_back({{"length", g.inputs.clean.size(1)}, {"prompts", g.inputs.clean.size(0)}});
  }
  out.json["prompts"] = total;
  out.json["prompts_dropped"] = dropped;
}

void putAblationSummary(AnalysisResult& out, const AblationResult& r) {
  out.json["metric"] = "logit_diff";
  out.json["metric_before"] = r.metricBefore;
  out.json["metric_after"] = r.metricAfter;
  out.json["accuracy_before"] = r.accuracyBefore;
  out.json["accuracy_after"] = r.accuracyAfter;
  out.json["above_before"] = r.aboveBefore;
  out.json["above_after"] = r.aboveAfter;
  out.json["answer_prob_before"] = r.answerProbBefore.to(at::kDouble).mean().item<double>();
  out.json["answer_prob_after"] = r.answerProbAfter.to(at::kDouble).mean().item<double>();
  out.json["per_prompt"] = nlohmann::json::array();
  for (int64_t b = 0; b < r.perPromptBefore.size(0); ++b)
    out.json["per_prompt"].push_back({{"before", r.perPromptBefore[b].item<double>()}, {"after", r.perPromptAfter[b].item<double>()}});
  out.addArray("per_prompt_before", r.perPromptBefore);
  out.addArray("per_prompt_after", r.perPromptAfter);
}

}  // namespace mechscope::analysis
