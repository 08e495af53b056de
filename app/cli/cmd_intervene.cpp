// `mechscope-cli intervene`: force chosen heads' final-position attention onto chosen tokens (e.g. the
// incorrect colours, as Merullo et al.'s repair of Colored Objects) and report accuracy and logit
// difference before/after.
#include <ATen/ATen.h>

#include <algorithm>
#include <iostream>
#include <sstream>

#include <fmt/format.h>

#include "analysis/ablation/ablation.hpp"
#include "analysis/ablation/ablation_groups.hpp"
#include "analysis/common/datasets.hpp"
#include "analysis/common/result_io.hpp"
#include "analysis/patching/patch_groups.hpp"
#include "app/cli/analysis_common_options.hpp"
#include "app/cli/causal_dataset_options.hpp"
#include "app/cli/command.hpp"
#include "core/common/errors.hpp"

namespace mechscope::cli {
namespace {

struct InterveneOptions {
  AnalysisCommonOptions common;
  CausalDatasetOptions data;
  std::string heads, ontoIds, onto;
  bool excludeAnswer = false;
};

/// The key positions a prompt's final row is forced onto. --onto incorrect: the prompt's incorrect-role
/// positions when the dataset names them (Colored Objects: the query's two other colours, as Merullo et
/// al.'s repair), else every position holding the incorrect answer token; --onto-ids: every position
/// holding one of `ids` (with --exclude-answer, not the answer token). The last position never counts.
std::vector<int64_t> interveneKeys(const analysis::CausalPrompt& p, const InterveneOptions& o, const std::vector<int64_t>& ids) {
  std::vector<int64_t> keys;
  const auto last = static_cast<int64_t>(p.cleanIds.size()) - 1;
  if (o.onto == "incorrect") {
    for (const auto& [role, pos] : p.positions)
      if (role.rfind("INCORRECT", 0) == 0 && pos < last) keys.push_back(pos);
    if (!keys.empty()) {
      std::sort(keys.begin(), keys.end());
      return keys;
    }
  }
  for (int64_t j = 0; j < last; ++j) {
    const int64_t t = p.cleanIds[static_cast<size_t>(j)];
    const bool hit = o.onto == "incorrect" ? t == p.incorrectId : std::find(ids.begin(), ids.end(), t) != ids.end();
    if (hit && !(o.excludeAnswer && t == p.answerId)) keys.push_back(j);
  }
  return keys;
}

void runIntervene(InterveneOptions& o) {
  if (o.ontoIds.empty() == o.onto.empty()) throw InputError("intervene: give --onto-ids ID,... or --onto incorrect");
  if (!o.onto.empty() && o.onto != "incorrect") throw InputError(fmt::format("intervene: --onto must be 'incorrect', found '{}'", o.onto));
  if (o.heads.empty()) throw InputError("intervene: --heads LAYER.HEAD,... is required");
  LoadedModel m = loadAnalysisModel(o.common);
  const analysis::CausalDataset ds = o.data.load(m);
  int dropped = 0;
  const std::vector<analysis::PatchGroup> groups = analysis::toPatchGroups(ds, &dropped);
  analysis::AblationParams p;
  p.method = analysis::AblationMethod::Force;
  p.heads = parseHeadList(o.heads, "--heads");
  p.positions = {-1};
  const std::vector<int64_t> ids = o.ontoIds.empty() ? std::vector<int64_t>{} : analysis::parseIdList(o.ontoIds, "--onto-ids");
  int64_t withoutKeys = 0;
  std::vector<analysis::AblationResult> parts;
  for (const auto& g : groups) {
    const analysis::PatchInputs& in = g.inputs;
    analysis::AblationParams pg = p;
    for (int64_t b = 0; b < in.clean.size(0); ++b) {
      std::vector<int64_t> keys = interveneKeys(ds.prompts[static_cast<size_t>(g.promptIndex[static_cast<size_t>(b)])], o, ids);
      if (keys.empty()) {
        ++withoutKeys;
        keys.push_back(in.clean.size(1) - 1);  // nothing to force onto: the row attends itself
      }
      pg.forceKeys.push_back(keys);
    }
    parts.push_back(analysis::ablate(*m.model, in.clean, in.correct, in.incorrect, pg, &processContext()));
  }
  const analysis::AblationResult r = analysis::combineAblationResults(parts, groups);
  analysis::AnalysisResult out;
  out.name = "intervene";
  out.json["analysis"] = "intervene";
  out.json["heads"] = o.heads;
  putAblationSummary(out, r);
  putPromptGroups(out, groups, dropped);
  out.json["prompts_without_keys"] = withoutKeys;
  writeAnalysisOutputs(o.common, out, m, "materialized");
  std::cout << fmt::format("intervene on {}: accuracy {:.3f} → {:.3f}, LD {:.4f} → {:.4f} ({} prompts, {} without target tokens)\n",
                           o.heads, r.accuracyBefore, r.accuracyAfter, r.metricBefore, r.metricAfter, analysis::groupPromptCount(groups), withoutKeys);
}

const RegisterCommand reg_cmd_intervene{"intervene", 45, [](CLI::App& root) {
  auto o = std::make_shared<InterveneOptions>();
  auto* sub = root.add_subcommand("intervene", "Force heads' final-position attention onto chosen tokens; accuracy and LD before/after");
  sub->add_option("--model", o->common.model, "Hugging Face model folder")->required();
  o->data.add(sub, "ioi, colored-objects or FILE.jsonl", true);
  sub->add_option("--heads", o->heads, "LAYER.HEAD list, e.g. 12.3,13.4,19.1");
  sub->add_option("--onto-ids", o->ontoIds, "token ids to attend to (every position holding one), e.g. the colour ids");
  sub->add_option("--onto", o->onto, "'incorrect': each prompt's incorrect colours (Colored Objects: the query's two other colours), else the positions of its incorrect answer token");
  sub->add_flag("--exclude-answer", o->excludeAnswer, "with --onto-ids: skip positions holding the correct answer");
  o->common.addRunAndOutputs(sub);
  sub->callback([o, sub] {
    o->common.finishCommandLine(sub);
    runIntervene(*o);
  });
}};

}  // namespace
}  // namespace mechscope::cli
