// DLA in the plugin shape: `mechscope-cli dla`, the GUI's DLA panel and batch plans derive from this table
// and run directLogitAttributionGroups over the dataset's length groups.
#include <ATen/ATen.h>

#include <sstream>

#include "analysis/ablation/ablation_groups.hpp"
#include "analysis/attribution/dla_groups.hpp"
#include "analysis/common/datasets.hpp"

namespace mechscope::analysis {

namespace {

AnalysisResult runDla(const PluginInputs& in, const ParamValues& params, const RunContext* ctx) {
  DlaParams p;
  std::stringstream roles(params.text("copy_roles"));
  for (std::string r; std::getline(roles, r, ',');)
    if (!r.empty()) p.copyRoles.push_back(r);
  p.topK = params.integer("top_k");
  int dropped = 0;
  const std::vector<PatchGroup> groups = toPatchGroups(*in.dataset, &dropped);
  const DlaDatasetResult r = directLogitAttributionGroups(*in.model, groups, p, ctx);
  AnalysisResult out;
  out.name = "dla";
  out.json = toJson(r);
  out.addArray("per_prompt_heads", r.perPromptHeads);
  out.addArray("per_prompt_mlp", r.perPromptMlp);
  putPromptGroups(out, groups, dropped);
  return out;
}

}  // namespace

AnalysisPlugin dlaPlugin() {
  AnalysisPlugin p = makePlugin("dla", "DLA",
                                "direct logit attribution of every head and MLP along correct - incorrect; OV copy scores",
                                PluginInput::Dataset, runDla);
  auto& d = p.descriptor;
  ParamInfo topK = makeParam("top_k", ParamType::Int, "--top-k", "copy score: a hit when the token is among the k largest logits", "5");
  topK.minimum = 1;
  d.params = {makeParam("copy_roles", ParamType::String, "--copy-roles",
                        "also the OV copy score of every head on the tokens at these roles, e.g. IO,S1,S2 (Wang et al.)"),
              topK};
  d.figureKeys = {"heads"};
  d.headlineKeys = {"logit_diff", "prompts"};
  return p;
}

}  // namespace mechscope::analysis
