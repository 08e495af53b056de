// `mechscope-cli ablate`: zero / mean / resample / uniform / force ablation of a head set (or, with
// --knockout, of every other head); JSON contract: metric_before, metric_after, per_prompt. With --sweep,
// every head ablated alone (analysis::ablationHeadSweep, the GUI's ablation sweep): metric_before,
// sweep [layer][head] (the metric after), top_drops.
#include <ATen/ATen.h>

#include <iostream>
#include <sstream>

#include <fmt/format.h>

#include "analysis/ablation/ablation.hpp"
#include "analysis/ablation/ablation_groups.hpp"
#include "analysis/ablation/ablation_sweep.hpp"
#include "analysis/common/datasets.hpp"
#include "analysis/common/result_io.hpp"
#include "app/cli/analysis_common_options.hpp"
#include "app/cli/causal_dataset_options.hpp"
#include "app/cli/command.hpp"
#include "core/common/errors.hpp"

namespace mechscope::cli {
namespace {

struct AblateOptions {
  AnalysisCommonOptions common;
  CausalDatasetOptions data;
  std::string heads, positions, method = "zero", forceKeys, forceWeights;
  bool knockout = false, perTemplate = false, pooled = false, sweep = false;
};

/// The ablation of one token-length group: the reference (the corrupted set, p_ABC for IOI), the template
/// ids and the role positions are the group's, as mean and resample ablation need positions that align.
analysis::AblationParams forGroup(const analysis::AblationParams& p, const analysis::PatchGroup& g) {
  analysis::AblationParams pg = p;
  pg.reference = g.inputs.corrupt;
  pg.promptGroups = g.templateIds;
  pg.referenceGroups = g.templateIds;
  pg.roles = g.inputs.roles;
  return pg;
}

/// --sweep: every head ablated alone, group by group, combined over the prompts.
void runSweep(const AblateOptions& o, const LoadedModel& m, const std::vector<analysis::PatchGroup>& groups, int dropped,
              const analysis::AblationParams& p) {
  std::vector<analysis::AblationSweepResult> parts;
  for (const auto& g : groups)
    parts.push_back(analysis::ablationHeadSweep(*m.model, g.inputs.clean, g.inputs.correct, g.inputs.incorrect, forGroup(p, g), &processContext()));
  const analysis::AblationSweepResult r = analysis::combineAblationSweeps(parts, groups);
  analysis::AnalysisResult out;
  out.name = "ablate";
  out.json["analysis"] = "ablate";
  out.json["method"] = o.method;
  analysis::putAblationSweep(out, r);
  analysis::putPromptGroups(out, groups, dropped);
  writeAnalysisOutputs(o.common, out, m, "materialized");
  std::string top;
  for (const auto& d : analysis::largestAblationDrops(r, 5))
    top += fmt::format("{}{} {:.4f} (−{:.4f})", top.empty() ? "" : ", ", toString(d.head), d.metricAfter, d.drop);
  std::cout << fmt::format("ablate {} sweep ({} heads, each alone): LD {:.4f} before; largest drops: {}\n", o.method, r.metricAfter.numel(),
                           r.metricBefore, top);
}

void runAblate(AblateOptions& o) {
  o.common.validateOutputs("ablate");
  if (o.sweep && (!o.heads.empty() || o.knockout))
    throw InputError("ablate: --sweep ablates every head alone; leave out --heads and --knockout");
  if (!o.sweep && o.heads.empty()) throw InputError("ablate: give --heads (the heads to ablate) or --sweep (every head alone)");
  LoadedModel m = loadAnalysisModel(o.common);
  const analysis::CausalDataset ds = o.data.load(m);
  int dropped = 0;
  const std::vector<analysis::PatchGroup> groups = analysis::toPatchGroups(ds, &dropped);
  analysis::AblationParams p;
  p.method = analysis::parseAblationMethod(o.method);
  bool anyRole = false;
  for (const auto& spec : o.sweep ? std::vector<HeadSpec>{} : parseHeadSpecs(o.heads, "--heads", true)) {
    p.heads.push_back(spec.head);
    p.headRoles.push_back(spec.role);
    anyRole = anyRole || !spec.role.empty();
  }
  if (!anyRole) p.headRoles.clear();
  p.knockout = o.knockout;
  if (!o.positions.empty()) p.positions = analysis::parseIdList(o.positions, "--positions");
  p.perTemplate = o.perTemplate;
  p.pooled = o.pooled;
  p.seed = o.data.seed;
  if (!o.forceKeys.empty()) p.forceKeys = {analysis::parseIdList(o.forceKeys, "--force-keys")};
  if (!o.forceWeights.empty()) {
    std::stringstream ss(o.forceWeights);
    for (std::string w; std::getline(ss, w, ',');) p.forceWeights.push_back(std::stod(w));
  }
  if (o.sweep) return runSweep(o, m, groups, dropped, p);
  std::vector<analysis::AblationResult> parts;  // one ablation per token-length group
  for (const auto& g : groups)
    parts.push_back(analysis::ablate(*m.model, g.inputs.clean, g.inputs.correct, g.inputs.incorrect, forGroup(p, g), &processContext()));
  const analysis::AblationResult r = analysis::combineAblationResults(parts, groups);
  analysis::AnalysisResult out;
  out.name = "ablate";
  out.json["analysis"] = "ablate";
  out.json["method"] = o.method;
  out.json["knockout"] = o.knockout;
  out.json["heads"] = o.heads;
  out.json["ablated_heads"] = r.ablatedHeads;
  out.json["above_meaning"] = "fraction of prompts whose correct answer's logit beats the incorrect one's (Wang et al.'s IO > S)";
  putAblationSummary(out, r);
  putPromptGroups(out, groups, dropped);
  writeAnalysisOutputs(o.common, out, m, "materialized");
  std::cout << fmt::format("ablate {} ({} heads{}): LD {:.4f} → {:.4f}, accuracy (top-1) {:.3f} → {:.3f}, correct above incorrect {:.3f} → {:.3f}, "
                           "answer probability {:.4f} → {:.4f}\n",
                           o.method, r.ablatedHeads, o.knockout ? ", knockout" : "", r.metricBefore, r.metricAfter, r.accuracyBefore,
                           r.accuracyAfter, r.aboveBefore, r.aboveAfter, r.answerProbBefore.to(at::kDouble).mean().item<double>(),
                           r.answerProbAfter.to(at::kDouble).mean().item<double>());
}

const RegisterCommand reg_cmd_ablate{"ablate", 41, [](CLI::App& root) {
  auto o = std::make_shared<AblateOptions>();
  auto* sub = root.add_subcommand("ablate", "Head ablation: zero, mean, resample, uniform attention, attention forcing, knockout");
  sub->add_option("--model", o->common.model, "Hugging Face model folder")->required();
  o->data.add(sub, "ioi, colored-objects or FILE.jsonl (corrupted prompts = reference set)", false,
              "JSON file: [[ids], ...] reference prompts");
  sub->add_option("--heads", o->heads,
                  "LAYER.HEAD list, e.g. 9.9,10.0; LAYER.HEAD@ROLE ablates the head only at the prompt's ROLE position (with "
                  "--knockout: keeps it only there), e.g. 9.9@END,5.5@S2,4.11@S1+1 for Wang et al.'s (head, position) knockout");
  sub->add_flag("--sweep", o->sweep,
               "ablate every head alone instead of --heads: JSON sweep [layer][head] (the metric after) and metric_before; "
               "prints the largest drops");
  sub->add_option("--method", o->method, "zero (default), mean, resample, uniform, force");
  sub->add_flag("--knockout", o->knockout, "keep --heads, ablate every other head");
  sub->add_option("--positions", o->positions,
                  "positions (query rows for uniform/force), e.g. -1; default all (force: the rows at or after the last forced key)");
  sub->add_flag("--per-template", o->perTemplate, "mean: per-template means (dataset template ids)");
  sub->add_flag("--pooled", o->pooled, "resample: from the pooled prompt × position vectors (default paired)");
  sub->add_option("--force-keys", o->forceKeys, "force: key positions, e.g. 3,7");
  sub->add_option("--force-weights", o->forceWeights, "force: weights over the keys (default uniform)");
  o->common.addRunAndOutputs(sub);
  sub->callback([o, sub] {
    o->common.finishCommandLine(sub);
    runAblate(*o);
  });
}};

}  // namespace
}  // namespace mechscope::cli
