#include "app/cli/causal_dataset_options.hpp"

#include <ATen/ATen.h>

#include <optional>

#include "analysis/common/param_values.hpp"

namespace mechscope::cli {

void CausalDatasetOptions::add(CLI::App* sub, const std::string& datasetHelp, bool datasetRequired,
                               const std::string& corruptIdsHelp, bool withCorruption) {
  auto* opt = sub->add_option("--dataset,--task", dataset, datasetHelp);
  if (datasetRequired) opt->required();
  if (!corruptIdsHelp.empty()) {
    sub->add_option("--clean-ids", cleanIds, "JSON file: [[ids], ...] prompts");
    sub->add_option("--corrupt-ids", corruptIds, corruptIdsHelp);
    sub->add_option("--answer-ids", answerIds, "CORRECT,INCORRECT token ids (with --clean-ids)");
  }
  sub->add_option("--n", n, "prompts to generate for a task (default 50)");
  sub->add_option("--seed", seed, "generator seed (default 0)");
  if (withCorruption)
    sub->add_option("--corruption", corruption, "IOI corruption: abc (Wang et al., default) or s2-io (Merullo et al.)")
        ->check(CLI::IsMember({"abc", "s2-io"}));
}

analysis::CausalDataset CausalDatasetOptions::load(const LoadedModel& m) const {
  analysis::CausalSource src;
  src.task = dataset;
  if (!cleanIds.empty()) src.cleanIds = readTokenIdRows(cleanIds);
  if (!corruptIds.empty()) src.corruptIds = readTokenIdRows(corruptIds);
  if (!answerIds.empty()) src.answerIds = analysis::parseIntegerList(answerIds, "--answer-ids");
  src.n = n;
  src.seed = seed;
  src.ioiCorruption = corruption == "s2-io" ? analysis::IoiCorruption::S2Io : analysis::IoiCorruption::Abc;
  const std::optional<int64_t> bos = m.tokenizer && m.tokenizer->bosId() ? m.tokenizer->bosId() : m.model->config().bosTokenId;
  return analysis::loadCausalDataset(src, m.tokenizer ? &*m.tokenizer : nullptr, bos);
}

}  // namespace mechscope::cli
