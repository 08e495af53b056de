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

#include "analysis/attribution/dla_groups.hpp"
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
  analysis::DlaParams p;
  p.copyRoles = roles;
  p.topK = o.topK;
  const analysis::DlaDatasetResult r = analysis::directLogitAttributionGroups(*m.model, groups, p, &processContext());
  analysis::AnalysisResult out;
  out.name = "dla";
  out.json = analysis::toJson(r);
  out.addArray("per_prompt_heads", r.perPromptHeads);
  out.addArray("per_prompt_mlp", r.perPromptMlp);
  putPromptGroups(out, groups, dropped);
  writeAnalysisOutputs(o.common, out, m, "materialized");
  const int H = m.model->config().nHeads;
  const at::Tensor meanHeads = r.perPromptHeads.mean(0);  // [layer, head]
  const int64_t pairs = r.copyPairs;
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
