// `mechscope-cli dla`: direct logit attribution of every head and MLP along correct − incorrect at the
// last position (TransformerLens' cached final-norm scale; docs/causal-protocols.md §DLA) and, with
// --copy-roles, Wang et al.'s OV copy score of every head on the prompts' tokens at those roles. JSON
// contract: heads [layer][head], mlp [layer], rest, logit_diff, per_prompt_heads, copy_score{positive,
// negative, k, roles, pairs}.
#include <ATen/ATen.h>

#include <algorithm>
#include <iostream>
#include <sstream>

#include <fmt/format.h>

#include "analysis/attribution/direct_logit.hpp"
#include "analysis/common/datasets.hpp"
#include "analysis/common/result_io.hpp"
#include "analysis/patching/patch_groups.hpp"
#include "app/cli/analysis_common_options.hpp"
#include "app/cli/causal_dataset_options.hpp"
#include "app/cli/command.hpp"
#include "core/common/errors.hpp"

namespace mechscope::cli {
namespace {

struct DlaOptions {
  AnalysisCommonOptions common;
  CausalDatasetOptions data;
  std::string copyRoles;
  int64_t topK = 5;
};

/// [n, ...] per-prompt rows in dataset order from each group's [batch, ...] rows.
at::Tensor inDatasetOrder(const std::vector<analysis::PatchGroup>& groups, const std::vector<at::Tensor>& parts) {
  std::vector<int64_t> shape{analysis::groupPromptCount(groups)};
  for (int64_t d = 1; d < parts.at(0).dim(); ++d) shape.push_back(parts[0].size(d));
  at::Tensor out = at::zeros(shape, at::kDouble);
  for (size_t g = 0; g < groups.size(); ++g)
    out.index_copy_(0, at::tensor(groups[g].promptIndex, at::kLong), parts[g].to(at::kDouble));
  return out;
}

void runDla(DlaOptions& o) {
  o.common.validateOutputs("dla");
  std::vector<std::string> roles;
  std::stringstream rs(o.copyRoles);
  for (std::string r; std::getline(rs, r, ',');)
    if (!r.empty()) roles.push_back(r);
  LoadedModel m = loadAnalysisModel(o.common);
  const analysis::CausalDataset ds = o.data.load(m);
  int dropped = 0;
  const std::vector<analysis::PatchGroup> groups = analysis::toPatchGroups(ds, &dropped);
  for (const auto& role : roles)
    for (const auto& g : groups)
      if (!g.inputs.roles.count(role))
        throw InputError(fmt::format("dla: --copy-roles {}: the prompts have no '{}' role position (roles come from `dataset` or a "
                                     "JSONL \"positions\" object)",
                                     o.copyRoles, role));
  std::vector<at::Tensor> heads, mlp, ld, rest;
  const int L = m.model->config().nLayers, H = m.model->config().nHeads;
  at::Tensor hitsPos = at::zeros({L, H}, at::kDouble), hitsNeg = at::zeros({L, H}, at::kDouble);
  int64_t pairs = 0;
  for (const auto& g : groups) {
    const analysis::DirectLogitResult r =
        analysis::directLogitAttribution(*m.model, g.inputs.clean, g.inputs.correct, g.inputs.incorrect, &processContext());
    heads.push_back(r.perPromptHeads);
    mlp.push_back(r.perPromptMlp);
    ld.push_back(r.logitDiff);
    rest.push_back(r.rest);
    if (roles.empty()) continue;
    std::vector<at::Tensor> cols;
    for (const auto& role : roles) cols.push_back(g.inputs.roles.at(role));
    const analysis::CopyScoreResult c = analysis::ovCopyScores(*m.model, g.inputs.clean, at::stack(cols, 1), o.topK, &processContext());
    hitsPos += c.positive * static_cast<double>(c.pairs) / 100.0;  // back to counts: groups weigh by their pairs
    hitsNeg += c.negative * static_cast<double>(c.pairs) / 100.0;
    pairs += c.pairs;
  }
  const at::Tensor perHeads = inDatasetOrder(groups, heads);  // [n, layer, head]
  const at::Tensor perMlp = inDatasetOrder(groups, mlp);      // [n, layer]
  const at::Tensor meanHeads = perHeads.mean(0);              // [layer, head]
  analysis::AnalysisResult out;
  out.name = "dla";
  out.json["analysis"] = "dla";
  out.json["direction"] = "W_U[correct] - W_U[incorrect] at the last position; final norm by the clean run's cached scale";
  out.json["heads"] = analysis::tensorToJson(meanHeads);
  out.json["mlp"] = analysis::tensorToJson(perMlp.mean(0));
  out.json["rest"] = inDatasetOrder(groups, rest).mean().item<double>();
  out.json["logit_diff"] = inDatasetOrder(groups, ld).mean().item<double>();
  out.addArray("per_prompt_heads", perHeads);
  out.addArray("per_prompt_mlp", perMlp);
  out.json["per_prompt_heads"] = analysis::tensorToJson(perHeads);
  if (!roles.empty()) {
    out.json["copy_score"] = {{"positive", analysis::tensorToJson(hitsPos * 100.0 / static_cast<double>(pairs))},
                              {"negative", analysis::tensorToJson(hitsNeg * 100.0 / static_cast<double>(pairs))},
                              {"k", o.topK},
                              {"roles", roles},
                              {"pairs", pairs}};
  }
  putPromptGroups(out, groups, dropped);
  writeAnalysisOutputs(o.common, out, m, "materialized");
  // Headline: the three heads with the largest |DLA|.
  const at::Tensor flat = meanHeads.reshape({-1});
  const at::Tensor order = std::get<1>(flat.abs().sort(0, true));
  std::string top;
  for (int64_t i = 0; i < std::min<int64_t>(3, flat.numel()); ++i) {
    const int64_t j = order[i].item<int64_t>();
    top += fmt::format("{}{}.{} {:+.3f}", i ? ", " : "", j / H, j % H, flat[j].item<double>());
  }
  std::cout << fmt::format("dla over {} prompts: LD {:.4f}; largest heads {}{}\n", analysis::groupPromptCount(groups),
                           out.json["logit_diff"].get<double>(), top,
                           roles.empty() ? std::string() : fmt::format("; copy scores over {} (prompt, role) pairs", pairs));
}

const RegisterCommand reg_cmd_dla{"dla", 44, [](CLI::App& root) {
  auto o = std::make_shared<DlaOptions>();
  auto* sub = root.add_subcommand("dla", "Direct logit attribution of every head and MLP (correct − incorrect), OV copy scores");
  sub->add_option("--model", o->common.model, "Hugging Face model folder")->required();
  o->data.add(sub, "ioi, colored-objects or FILE.jsonl", true);
  sub->add_option("--copy-roles", o->copyRoles,
                  "also the OV copy score of every head on the tokens at these roles, e.g. IO,S1,S2 (Wang et al.)");
  sub->add_option("--top-k", o->topK, "copy score: a hit when the token is among the k largest logits (default 5)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  o->common.addRunAndOutputs(sub);
  sub->callback([o, sub] {
    o->common.finishCommandLine(sub);
    runDla(*o);
  });
}};

}  // namespace
}  // namespace mechscope::cli
