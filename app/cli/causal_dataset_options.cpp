#include "app/cli/causal_dataset_options.hpp"

#include <ATen/ATen.h>

#include <optional>

namespace mechscope::cli {

void CausalDatasetOptions::add(CLI::App* sub, const std::string& datasetHelp, bool datasetRequired,
                               const std::string& corruptIdsHelp) {
  auto* opt = sub->add_option("--dataset,--task", dataset, datasetHelp);
  if (datasetRequired) opt->required();
  if (!corruptIdsHelp.empty()) {
    sub->add_option("--clean-ids", cleanIds, "JSON file: [[ids], ...] prompts");
    sub->add_option("--corrupt-ids", corruptIds, corruptIdsHelp);
    sub->add_option("--answer-ids", answerIds, "CORRECT,INCORRECT token ids (with --clean-ids)");
  }
  sub->add_option("--n", n, "prompts to generate for a task (default 50)");
  sub->add_option("--seed", seed, "generator seed (default 0)");
}

analysis::CausalDataset CausalDatasetOptions::load(const LoadedModel& m) const {
  analysis::CausalSource src;
  src.task = dataset;
  if (!cleanIds.empty()) src.cleanIds = readTokenIdRows(cleanIds);
  if (!corruptIds.empty()) src.corruptIds = readTokenIdRows(corruptIds);
  if (!answerIds.empty()) src.answerIds = analysis::parseIdList(answerIds, "--answer-ids");
  src.n = n;
  src.seed = seed;
  const std::optional<int64_t> bos = m.tokenizer && m.tokenizer->bosId() ? m.tokenizer->bosId() : m.model->config().bosTokenId;
  return analysis::loadCausalDataset(src, m.tokenizer ? &*m.tokenizer : nullptr, bos);
}

void putPromptGroups(analysis::AnalysisResult& out, const std::vector<analysis::PatchGroup>& groups, int dropped) {
  out.json["prompts"] = 0;
  out.json["prompt_lengths"] = nlohmann::json::array();
  int64_t total = 0;
  for (const auto& g : groups) {
    total += g.inputs.clean.size(0);
    out.json["prompt_lengths"].push_back({{"length", g.inputs.clean.size(1)}, {"prompts", g.inputs.clean.size(0)}});
  }
  out.json["prompts"] = total;
  out.json["prompts_dropped"] = dropped;
}

void putAblationSummary(analysis::AnalysisResult& out, const analysis::AblationResult& r) {
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

}  // namespace mechscope::cli
