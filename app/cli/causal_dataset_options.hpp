#pragma once
// The prompt-set options the causal commands share (ablate, patch, intervene): a generated task or a JSONL
// file (--dataset/--task) or token-id files, with --n and --seed, and the before/after summary that the
// ablation-style commands write.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "analysis/ablation/ablation.hpp"
#include "analysis/ablation/ablation_groups.hpp"
#include "analysis/common/datasets.hpp"
#include "analysis/common/result_io.hpp"
#include "app/cli/analysis_common_options.hpp"

namespace mechscope::cli {

/// --dataset/--task, optional --clean-ids/--corrupt-ids/--answer-ids, --n and --seed, filled by CLI11.
struct CausalDatasetOptions {
  std::string dataset, cleanIds, corruptIds, answerIds;
  std::string corruption = "abc";  ///< IOI corruption: abc (Wang et al.) or s2-io (Merullo et al.)
  int n = 50;
  uint64_t seed = 0;

  /// Registers --dataset/--task (with `datasetHelp`; required when `datasetRequired`), the id-file options
  /// when `corruptIdsHelp` is not empty (it describes --corrupt-ids), then --n and --seed, and --corruption
  /// when `withCorruption`.
  void add(CLI::App* sub, const std::string& datasetHelp, bool datasetRequired, const std::string& corruptIdsHelp = "",
           bool withCorruption = false);
  /// The prompt set: the task generated with the model's tokenizer, the JSONL file, or the id files; BOS
  /// as the tokenizer (or else config.json) names it.
  [[nodiscard]] analysis::CausalDataset load(const LoadedModel& m) const;
};

// The JSON blocks every dataset analysis writes (analysis/ablation/ablation_groups.hpp).
using analysis::putAblationSummary;
using analysis::putPromptGroups;

}  // namespace mechscope::cli
