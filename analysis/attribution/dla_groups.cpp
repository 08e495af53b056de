#include "analysis/attribution/dla_groups.hpp"

#include <ATen/ATen.h>

#include <fmt/format.h>

#include "analysis/common/result_io.hpp"
#include "analysis/patching/patch_groups.hpp"
#include "core/common/errors.hpp"

namespace mechscope::analysis {

DlaDatasetResult directLogitAttributionGroups(const HookedTransformer& m, const std::vector<PatchGroup>& groups, const DlaParams& p,
                                              const RunContext* ctx) {
  if (groups.empty()) throw InputError("dla: the dataset has no usable prompt pairs");
  for (const auto& role : p.copyRoles)
    for (const auto& g : groups)
      if (!g.inputs.roles.count(role))
        throw InputError(fmt::format("dla: copy-score role '{}': the prompts have no '{}' role position (roles come from `dataset` or a "
                                     "JSONL \"positions\" object)",
                                     role, role));
  const int L = m.config().nLayers, H = m.config().nHeads;
  std::vector<at::Tensor> heads, mlp, ld, rest;
  DlaDatasetResult r;
  r.params = p;
  at::Tensor hitsPos = at::zeros({L, H}, at::kDouble), hitsNeg = at::zeros({L, H}, at::kDouble);
  for (const auto& g : groups) {
    const DirectLogitResult d = directLogitAttribution(m, g.inputs.clean, g.inputs.correct, g.inputs.incorrect, ctx);
    heads.push_back(d.perPromptHeads);
    mlp.push_back(d.perPromptMlp);
    ld.push_back(d.logitDiff);
    rest.push_back(d.rest);
    if (p.copyRoles.empty()) continue;
    std::vector<at::Tensor> cols;
    for (const auto& role : p.copyRoles) cols.push_back(g.inputs.roles.at(role));
    const CopyScoreResult c = ovCopyScores(m, g.inputs.clean, at::stack(cols, 1), p.topK, ctx);  // positions [batch, roles]
    hitsPos += c.positive * static_cast<double>(c.pairs) / 100.0;  // back to counts: groups weigh by their pairs
    hitsNeg += c.negative * static_cast<double>(c.pairs) / 100.0;
    r.copyPairs += c.pairs;
  }
  // Each group's [batch, ...] rows back in dataset order.
  const at::Tensor order = groupsToDatasetOrder(groups);  // [prompts]
  r.perPromptHeads = at::cat(heads).index_select(0, order);
  r.perPromptMlp = at::cat(mlp).index_select(0, order);
  r.logitDiff = at::cat(ld).index_select(0, order);
  r.rest = at::cat(rest).index_select(0, order);
  if (r.copyPairs > 0) {
    r.copyPositive = hitsPos * 100.0 / static_cast<double>(r.copyPairs);
    r.copyNegative = hitsNeg * 100.0 / static_cast<double>(r.copyPairs);
  }
  return r;
}

nlohmann::json toJson(const DlaDatasetResult& r) {
  nlohmann::json j;
  j["analysis"] = "dla";
  j["direction"] = "W_U[correct] - W_U[incorrect] at the last position; final norm by the clean run's cached scale";
  j["n_layers"] = r.perPromptHeads.size(1);
  j["n_heads"] = r.perPromptHeads.size(2);
  j["heads"] = tensorToJson(r.perPromptHeads.mean(0));
  j["mlp"] = tensorToJson(r.perPromptMlp.mean(0));
  j["rest"] = r.rest.mean().item<double>();
  j["logit_diff"] = r.logitDiff.mean().item<double>();
  j["per_prompt_heads"] = tensorToJson(r.perPromptHeads);
  j["layout"] = "[layer][head]";
  if (r.copyPairs > 0)
    j["copy_score"] = {{"positive", tensorToJson(r.copyPositive)},
                       {"negative", tensorToJson(r.copyNegative)},
                       {"k", r.params.topK},
                       {"roles", r.params.copyRoles},
                       {"pairs", r.copyPairs}};
  return j;
}

}  // namespace mechscope::analysis
