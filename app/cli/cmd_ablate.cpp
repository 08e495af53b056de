// `mechscope-cli ablate`: zero / mean / resample / uniform / force ablation of a head set (or, with
// --knockout, of every other head); JSON contract: metric_before, metric_after, per_prompt.
#include <ATen/ATen.h>

#include <iostream>
#include <sstream>

#include <fmt/format.h>

#include "analysis/ablation/ablation.hpp"
#include "analysis/common/datasets.hpp"
#include "analysis/common/result_io.hpp"
#include "app/cli/analysis_common_options.hpp"
#include "app/cli/command.hpp"
#include "core/common/errors.hpp"

namespace mechscope::cli {
namespace {

struct AblateOptions {
  AnalysisCommonOptions common;
  std::string dataset, cleanIds, corruptIds, answerIds, heads, positions, method = "zero", forceKeys, forceWeights;
  bool knockout = false, perTemplate = false, pooled = false;
  int n = 50;
  uint64_t seed = 0;
};

void runAblate(AblateOptions& o) {
  o.common.validateOutputs("ablate");
  LoadedModel m = loadAnalysisModel(o.common);
  analysis::CausalSource src;
  src.task = o.dataset;
  if (!o.cleanIds.empty()) src.cleanIds = readTokenIdRows(o.cleanIds);
  if (!o.corruptIds.empty()) src.corruptIds = readTokenIdRows(o.corruptIds);
  if (!o.answerIds.empty()) src.answerIds = analysis::parseIdList(o.answerIds, "--answer-ids");
  src.n = o.n;
  src.seed = o.seed;
  const std::optional<int64_t> bos = m.tokenizer && m.tokenizer->bosId() ? m.tokenizer->bosId() : m.model->config().bosTokenId;
  const analysis::CausalDataset ds = analysis::loadCausalDataset(src, m.tokenizer ? &*m.tokenizer : nullptr, bos);
  int dropped = 0;
  std::vector<int> groups;
  const analysis::PatchInputs in = analysis::toPatchInputs(ds, &dropped, &groups);
  analysis::AblationParams p;
  p.method = analysis::parseAblationMethod(o.method);
  p.heads = o.heads.empty() ? std::vector<analysis::HeadRef>{} : parseHeadList(o.heads, "--heads");
  p.knockout = o.knockout;
  if (!o.positions.empty()) p.positions = analysis::parseIdList(o.positions, "--positions");
  p.reference = in.corrupt;  // the corrupted set (p_ABC for IOI) is the reference distribution
  p.perTemplate = o.perTemplate;
  p.promptGroups = groups;
  p.referenceGroups = groups;
  p.pooled = o.pooled;
  p.seed = o.seed;
  if (!o.forceKeys.empty()) p.forceKeys = {analysis::parseIdList(o.forceKeys, "--force-keys")};
  if (!o.forceWeights.empty()) {
    std::stringstream ss(o.forceWeights);
    for (std::string w; std::getline(ss, w, ',');) p.forceWeights.push_back(std::stod(w));
  }
  const analysis::AblationResult r = analysis::ablate(*m.model, in.clean, in.correct, in.incorrect, p, &processContext());
  analysis::AnalysisResult out;
  out.name = "ablate";
  out.json["analysis"] = "ablate";
  out.json["method"] = o.method;
  out.json["knockout"] = o.knockout;
  out.json["heads"] = o.heads;
  out.json["ablated_heads"] = r.ablatedHeads;
  out.json["metric"] = "logit_diff";
  out.json["metric_before"] = r.metricBefore;
  out.json["metric_after"] = r.metricAfter;
  out.json["accuracy_before"] = r.accuracyBefore;
  out.json["accuracy_after"] = r.accuracyAfter;
  out.json["per_prompt"] = nlohmann::json::array();
  for (int64_t b = 0; b < r.perPromptBefore.size(0); ++b)
    out.json["per_prompt"].push_back({{"before", r.perPromptBefore[b].item<double>()}, {"after", r.perPromptAfter[b].item<double>()}});
  out.json["prompts_dropped"] = dropped;
  out.addArray("per_prompt_before", r.perPromptBefore);
  out.addArray("per_prompt_after", r.perPromptAfter);
  writeAnalysisOutputs(o.common, out, m, "materialized");
  std::cout << fmt::format("ablate {} ({} heads{}): LD {:.4f} → {:.4f}, accuracy {:.3f} → {:.3f}\n", o.method, r.ablatedHeads,
                           o.knockout ? ", knockout" : "", r.metricBefore, r.metricAfter, r.accuracyBefore, r.accuracyAfter);
}

const RegisterCommand reg{"ablate", 41, [](CLI::App& root) {
  auto o = std::make_shared<AblateOptions>();
  auto* sub = root.add_subcommand("ablate", "Head ablation: zero, mean, resample, uniform attention, attention forcing, knockout");
  sub->add_option("--model", o->common.model, "Hugging Face model folder")->required();
  sub->add_option("--dataset,--task", o->dataset, "ioi, colored-objects or FILE.jsonl (corrupted prompts = reference set)");
  sub->add_option("--clean-ids", o->cleanIds, "JSON file: [[ids], ...] prompts");
  sub->add_option("--corrupt-ids", o->corruptIds, "JSON file: [[ids], ...] reference prompts");
  sub->add_option("--answer-ids", o->answerIds, "CORRECT,INCORRECT token ids (with --clean-ids)");
  sub->add_option("--heads", o->heads, "LAYER.HEAD list, e.g. 9.9,10.0");
  sub->add_option("--method", o->method, "zero (default), mean, resample, uniform, force");
  sub->add_flag("--knockout", o->knockout, "keep --heads, ablate every other head");
  sub->add_option("--positions", o->positions, "positions (query rows for uniform/force), e.g. -1; default all");
  sub->add_flag("--per-template", o->perTemplate, "mean: per-template means (dataset template ids)");
  sub->add_flag("--pooled", o->pooled, "resample: from the pooled prompt × position vectors (default paired)");
  sub->add_option("--force-keys", o->forceKeys, "force: key positions, e.g. 3,7");
  sub->add_option("--force-weights", o->forceWeights, "force: weights over the keys (default uniform)");
  sub->add_option("--n", o->n, "prompts to generate for a task (default 50)");
  sub->add_option("--seed", o->seed, "seed (default 0)");
  o->common.addRunAndOutputs(sub);
  sub->callback([o, sub] {
    o->common.finishCommandLine(sub);
    runAblate(*o);
  });
}};

}  // namespace
}  // namespace mechscope::cli
