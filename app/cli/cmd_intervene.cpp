// `mechscope-cli intervene`: force chosen heads' final-position attention onto chosen tokens (e.g. the
// incorrect colours, as Merullo et al.'s repair of Colored Objects) and report accuracy and logit
// difference before/after.
#include <ATen/ATen.h>

#include <iostream>
#include <sstream>

#include <fmt/format.h>

#include "analysis/ablation/ablation.hpp"
#include "analysis/common/datasets.hpp"
#include "analysis/common/result_io.hpp"
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

void runIntervene(InterveneOptions& o) {
  if (o.ontoIds.empty() == o.onto.empty()) throw InputError("intervene: give --onto-ids ID,... or --onto incorrect");
  if (!o.onto.empty() && o.onto != "incorrect") throw InputError(fmt::format("intervene: --onto must be 'incorrect', found '{}'", o.onto));
  if (o.heads.empty()) throw InputError("intervene: --heads LAYER.HEAD,... is required");
  LoadedModel m = loadAnalysisModel(o.common);
  const analysis::CausalDataset ds = o.data.load(m);
  int dropped = 0;
  const analysis::PatchInputs in = analysis::toPatchInputs(ds, &dropped);
  analysis::AblationParams p;
  p.method = analysis::AblationMethod::Force;
  p.heads = parseHeadList(o.heads, "--heads");
  p.positions = {-1};
  const std::vector<int64_t> ids = o.ontoIds.empty() ? std::vector<int64_t>{} : analysis::parseIdList(o.ontoIds, "--onto-ids");
  int64_t withoutKeys = 0;
  for (int64_t b = 0; b < in.clean.size(0); ++b) {
    std::vector<int64_t> keys;
    const int64_t ans = in.correct[b].item<int64_t>(), wrong = in.incorrect[b].item<int64_t>();
    for (int64_t j = 0; j + 1 < in.clean.size(1); ++j) {
      const int64_t t = in.clean[b][j].item<int64_t>();
      const bool hit = o.onto == "incorrect" ? t == wrong : std::find(ids.begin(), ids.end(), t) != ids.end();
      if (hit && !(o.excludeAnswer && t == ans)) keys.push_back(j);
    }
    if (keys.empty()) {
      ++withoutKeys;
      keys.push_back(in.clean.size(1) - 1);  // nothing to force onto: the row attends itself
    }
    p.forceKeys.push_back(keys);
  }
  const analysis::AblationResult r = analysis::ablate(*m.model, in.clean, in.correct, in.incorrect, p, &processContext());
  analysis::AnalysisResult out;
  out.name = "intervene";
  out.json["analysis"] = "intervene";
  out.json["heads"] = o.heads;
  putAblationSummary(out, r);
  out.json["prompts_without_keys"] = withoutKeys;
  writeAnalysisOutputs(o.common, out, m, "materialized");
  std::cout << fmt::format("intervene on {}: accuracy {:.3f} → {:.3f}, LD {:.4f} → {:.4f} ({} prompts, {} without target tokens)\n",
                           o.heads, r.accuracyBefore, r.accuracyAfter, r.metricBefore, r.metricAfter, in.clean.size(0), withoutKeys);
}

const RegisterCommand reg_cmd_intervene{"intervene", 45, [](CLI::App& root) {
  auto o = std::make_shared<InterveneOptions>();
  auto* sub = root.add_subcommand("intervene", "Force heads' final-position attention onto chosen tokens; accuracy and LD before/after");
  sub->add_option("--model", o->common.model, "Hugging Face model folder")->required();
  o->data.add(sub, "ioi, colored-objects or FILE.jsonl", true);
  sub->add_option("--heads", o->heads, "LAYER.HEAD list, e.g. 12.3,13.4,19.1");
  sub->add_option("--onto-ids", o->ontoIds, "token ids to attend to (every position holding one), e.g. the colour ids");
  sub->add_option("--onto", o->onto, "'incorrect': the positions of each prompt's incorrect answer token");
  sub->add_flag("--exclude-answer", o->excludeAnswer, "with --onto-ids: skip positions holding the correct answer");
  o->common.addRunAndOutputs(sub);
  sub->callback([o, sub] {
    o->common.finishCommandLine(sub);
    runIntervene(*o);
  });
}};

}  // namespace
}  // namespace mechscope::cli
