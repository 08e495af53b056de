#include "analysis/intervention/intervention.hpp"

#include <ATen/ATen.h>

#include <algorithm>

#include "analysis/ablation/ablation.hpp"
#include "analysis/ablation/ablation_groups.hpp"
#include "analysis/patching/patch_groups.hpp"
#include "core/common/errors.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

std::vector<int64_t> interventionKeys(const CausalPrompt& p, const InterventionTarget& t) {
  std::vector<int64_t> keys;
  const auto last = static_cast<int64_t>(p.cleanIds.size()) - 1;
  if (t.ontoIncorrect) {
    // The dataset's incorrect roles (Colored Objects: the query's two other colours, as Merullo et al.).
    for (const auto& [role, pos] : p.positions)
      if (role.rfind("INCORRECT", 0) == 0 && pos < last) keys.push_back(pos);
    if (!keys.empty()) {
      std::sort(keys.begin(), keys.end());
      return keys;
    }
  }
  for (int64_t j = 0; j < last; ++j) {
    const int64_t tok = p.cleanIds[static_cast<size_t>(j)];
    const bool hit = t.ontoIncorrect ? tok == p.incorrectId : std::find(t.ontoIds.begin(), t.ontoIds.end(), tok) != t.ontoIds.end();
    if (hit && !(t.excludeAnswer && tok == p.answerId)) keys.push_back(j);
  }
  return keys;
}

namespace {

AnalysisResult runIntervention(const PluginInputs& in, const ParamValues& params, const RunContext* ctx) {
  if (params.given("onto_ids") == params.given("onto")) throw InputError("intervene: give --onto-ids ID,... or --onto incorrect");
  const ModelConfig& c = in.model->config();
  InterventionTarget target;
  target.ontoIncorrect = params.given("onto");
  target.ontoIds = params.integers("onto_ids");
  target.excludeAnswer = params.flag("exclude_answer");
  AblationParams p;
  p.method = AblationMethod::Force;
  p.heads = params.heads("heads", c.nLayers, c.nHeads);
  if (p.heads.empty()) throw InputError("intervene: --heads LAYER.HEAD,... is required");
  p.positions = {-1};
  const CausalDataset& ds = *in.dataset;
  int dropped = 0;
  const std::vector<PatchGroup> groups = toPatchGroups(ds, &dropped);
  int64_t withoutKeys = 0;
  std::vector<AblationResult> parts;
  for (const auto& g : groups) {
    AblationParams pg = p;
    for (int64_t b = 0; b < g.inputs.clean.size(0); ++b) {
      std::vector<int64_t> keys = interventionKeys(ds.prompts[static_cast<size_t>(g.promptIndex[static_cast<size_t>(b)])], target);
      if (keys.empty()) {
        ++withoutKeys;
        keys.push_back(g.inputs.clean.size(1) - 1);  // nothing to force onto: the row attends itself
      }
      pg.forceKeys.push_back(keys);
    }
    parts.push_back(ablate(*in.model, g.inputs.clean, g.inputs.correct, g.inputs.incorrect, pg, ctx));
  }
  const AblationResult r = combineAblationResults(parts, groups);
  AnalysisResult out;
  out.name = "intervene";
  out.json["analysis"] = "intervene";
  out.json["heads"] = params.text("heads");
  putAblationSummary(out, r);
  putPromptGroups(out, groups, dropped);
  out.json["prompts_without_keys"] = withoutKeys;
  return out;
}

}  // namespace

AnalysisPlugin interventionPlugin() {
  AnalysisPlugin p = makePlugin("intervene", "Intervene",
                                "attention intervention: force heads' final-position attention onto chosen tokens (accuracy before/after)",
                                PluginInput::Dataset, runIntervention);
  auto& d = p.descriptor;
  ParamInfo onto = makeParam("onto", ParamType::Choice, "--onto",
                             "'incorrect': each prompt's incorrect colours (Colored Objects: the query's two other colours), "
                             "else the positions of its incorrect answer token");
  onto.choices = {"incorrect"};
  d.params = {makeParam("heads", ParamType::HeadList, "--heads", "LAYER.HEAD list, e.g. 12.3,13.4,19.1"), onto,
              makeParam("onto_ids", ParamType::IntList, "--onto-ids", "token ids to attend to (every position holding one), e.g. the colour ids"),
              makeParam("exclude_answer", ParamType::Bool, "--exclude-answer", "with --onto-ids: skip positions holding the correct answer")};
  d.required = {"heads"};
  d.headlineKeys = {"metric_before", "metric_after", "accuracy_before", "accuracy_after", "prompts", "prompts_without_keys"};
  d.exampleArgs = {"--heads", "3.0,3.1", "--onto", "incorrect"};
  return p;
}

}  // namespace mechscope::analysis
