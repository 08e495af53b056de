#pragma once
// Direct logit attribution and OV copy scores over a whole causal dataset (every token-length group),
// with the JSON every front end writes and reads (the `dla --json` contract, docs/cli.md): the CLI's
// `dla`, the GUI's DLA panel and batch plans run this one function.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/attribution/direct_logit.hpp"
#include "analysis/common/analysis_plugin.hpp"
#include "analysis/patching/patch_types.hpp"

namespace mechscope::analysis {

/// Options of a dataset-wide DLA run.
struct DlaParams {
  std::vector<std::string> copyRoles;  ///< also the OV copy score on the tokens at these roles (e.g. IO, S1, S2); empty: none
  int64_t topK = 5;                    ///< copy score: a hit when the token is among the k largest logits
};

/// DLA of every prompt (dataset order) and copy scores pooled over every (prompt, role) pair.
struct DlaDatasetResult {
  at::Tensor perPromptHeads;  ///< [n, layer, head] fp64
  at::Tensor perPromptMlp;    ///< [n, layer] fp64
  at::Tensor logitDiff;       ///< [n] fp64
  at::Tensor rest;            ///< [n] fp64
  at::Tensor copyPositive;    ///< [layer, head] % (undefined without copy roles)
  at::Tensor copyNegative;    ///< [layer, head] %
  int64_t copyPairs = 0;
  DlaParams params;
};

/// Runs DLA (and copy scores) group by group; InputError when a copy role is missing from a group.
DlaDatasetResult directLogitAttributionGroups(const HookedTransformer& model, const std::vector<PatchGroup>& groups, const DlaParams& params,
                                              const RunContext* ctx = nullptr);

/// The `dla --json` object: heads [L][H], mlp [L], rest, logit_diff, per_prompt_heads, copy_score.
nlohmann::json toJson(const DlaDatasetResult& r);

/// The plugin (dla_plugin.cpp): copy_roles, top_k; on a dataset.
AnalysisPlugin dlaPlugin();

}  // namespace mechscope::analysis
