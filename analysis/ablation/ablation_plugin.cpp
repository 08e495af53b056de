// `ablate` in the plugin shape: zero / mean / resample / uniform / force ablation of a head set (or, with
// knockout, of every other head), and the head sweep (every head ablated alone, ablationHeadSweep), over
// the dataset's token-length groups. mechscope-cli's subcommand, the GUI's Ablation panel (on a dataset,
// or on the Patching panel's pair) and batch plans derive from this table.
// JSON contract (docs/cli.md): head set: metric_before, metric_after, accuracies, per_prompt; sweep:
// metric_before, sweep [layer][head] (the metric after), head_effect [layer][head] (after − before,
// optionally / |before|), top_drops. Both may be asked for in one run.
#include <ATen/ATen.h>

#include <cmath>
#include <cstdlib>
#include <sstream>

#include <fmt/format.h>

#include "analysis/ablation/ablation.hpp"
#include "analysis/ablation/ablation_groups.hpp"
#include "analysis/ablation/ablation_sweep.hpp"
#include "analysis/ablation/expert_ablation.hpp"
#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/datasets.hpp"
#include "core/common/errors.hpp"

namespace mechscope::analysis {

namespace {

/// The ablation of one token-length group: the reference (the corrupted set, p_ABC for IOI), the template
/// ids and the role positions are the group's, as mean and resample ablation need positions that align.
AblationParams ablationForGroup(const AblationParams& p, const PatchGroup& g) {
  AblationParams pg = p;
  pg.reference = g.inputs.corrupt;
  pg.promptGroups = g.templateIds;
  pg.referenceGroups = g.templateIds;
  pg.roles = g.inputs.roles;
  return pg;
}

/// "0.5,0.25" → {0.5, 0.25}; InputError naming the option for an item that is not a finite number.
std::vector<double> parseWeightList(const std::string& text, const std::string& what) {
  std::vector<double> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    if (item.empty() || *end != '\0' || !std::isfinite(v) || v < 0)
      throw InputError(fmt::format("{}: '{}' is not a non-negative number (e.g. 0.5,0.5)", what, item));
    out.push_back(v);
  }
  return out;
}

/// The parameters shared by the head set and the sweep (the heads are added by the caller).
AblationParams baseParams(const ParamValues& v, uint64_t seed) {
  AblationParams p;
  p.method = parseAblationMethod(v.text("method"));
  p.knockout = v.flag("knockout");
  p.positions = v.integers("positions");
  p.perTemplate = v.flag("per_template");
  p.pooled = v.flag("pooled");
  p.seed = seed;
  if (v.given("force_keys")) p.forceKeys = {v.integers("force_keys")};
  if (v.given("force_weights")) p.forceWeights = parseWeightList(v.text("force_weights"), "--force-weights");
  return p;
}

/// Every head alone, group by group, combined over the prompts; writes the sweep keys into `out`.
std::string runHeadSweep(const HookedTransformer& model, const std::vector<PatchGroup>& groups, const AblationParams& p,
                         bool normalise, AnalysisResult& out, const RunContext* ctx) {
  std::vector<AblationSweepResult> parts;
  for (const auto& g : groups)
    parts.push_back(ablationHeadSweep(model, g.inputs.clean, g.inputs.correct, g.inputs.incorrect, ablationForGroup(p, g), ctx));
  const AblationSweepResult r = combineAblationSweeps(parts, groups);
  putAblationSweep(out, r);
  const double before = r.metricBefore;
  const bool divide = normalise && std::abs(before) > 0;
  const at::Tensor effect = (r.metricAfter.to(at::kCPU, at::kDouble) - before) / (divide ? std::abs(before) : 1.0);  // [layer, head]
  out.json["head_effect"] = tensorToJson(effect);
  out.json["head_effect_label"] = divide ? "Δ logit diff / |logit diff before|" : "Δ logit diff";
  out.addArray("head_effect", effect);
  std::string top;
  for (const auto& d : largestAblationDrops(r, 5))
    top += fmt::format("{}{} {:.4f} (−{:.4f})", top.empty() ? "" : ", ", toString(d.head), d.metricAfter, d.drop);
  return fmt::format("ablate {} sweep ({} heads, each alone): LD {:.4f} before; largest drops: {}", toString(p.method),
                     r.metricAfter.numel(), before, top);
}

/// The head set ablated together (or, with knockout, every other head); writes its keys into `out`.
std::string runHeadSet(const HookedTransformer& model, const std::vector<PatchGroup>& groups, AblationParams p,
                       const std::vector<HeadSpec>& specs, const std::vector<HeadRef>& experts, AnalysisResult& out,
                       const RunContext* ctx) {
  p.experts = experts;
  checkExpertAblation(model, p);
  bool anyRole = false;
  nlohmann::json names = nlohmann::json::array();  // as given: "L.H" or "L.H@ROLE"
  for (const auto& spec : specs) {
    names.push_back(spec.role.empty() ? toString(spec.head) : toString(spec.head) + "@" + spec.role);
    p.heads.push_back(spec.head);
    p.headRoles.push_back(spec.role);
    anyRole = anyRole || !spec.role.empty();
  }
  if (!anyRole) p.headRoles.clear();
  std::vector<AblationResult> parts;  // one ablation per token-length group
  for (const auto& g : groups)
    parts.push_back(ablate(model, g.inputs.clean, g.inputs.correct, g.inputs.incorrect, ablationForGroup(p, g), ctx));
  const AblationResult r = combineAblationResults(parts, groups);
  out.json["knockout"] = p.knockout;
  out.json["heads"] = names;
  out.json["ablated_heads"] = r.ablatedHeads;
  if (!experts.empty()) {
    nlohmann::json expertNames = nlohmann::json::array();  // "LAYER.EXPERT"
    for (const auto& e : experts) expertNames.push_back(toString(e));
    out.json["experts"] = expertNames;
    out.json["ablated_experts"] = r.ablatedExperts;
  }
  out.json["above_meaning"] = "fraction of prompts whose correct answer's logit beats the incorrect one's (Wang et al.'s IO > S)";
  putAblationSummary(out, r);
  return fmt::format("ablate {} ({} heads{}{}): LD {:.4f} → {:.4f}, accuracy (top-1) {:.3f} → {:.3f}, correct above incorrect {:.3f} → "
                     "{:.3f}, answer probability {:.4f} → {:.4f}",
                     toString(p.method), r.ablatedHeads, p.knockout ? ", knockout" : "",
                     experts.empty() ? std::string() : fmt::format(", {} experts", experts.size()), r.metricBefore, r.metricAfter, r.accuracyBefore,
                     r.accuracyAfter, r.aboveBefore, r.aboveAfter, r.answerProbBefore.to(at::kDouble).mean().item<double>(),
                     r.answerProbAfter.to(at::kDouble).mean().item<double>());
}

AnalysisResult runAblatePlugin(const PluginInputs& in, const ParamValues& v, const RunContext* ctx) {
  const ModelConfig& c = in.model->config();
  const bool sweep = v.flag("sweep");
  const std::vector<HeadSpec> specs = v.given("heads") ? v.headSpecs("heads", c.nLayers, c.nHeads) : std::vector<HeadSpec>{};
  std::vector<HeadRef> experts;  // LAYER.EXPERT of mixture-of-experts layers
  if (v.given("experts")) experts = v.heads("experts", 0, 0);  // bounds: checkExpertAblation, with the sparse layers
  if (!sweep && specs.empty() && experts.empty())
    throw InputError("ablate: give --heads (the heads to ablate), --experts (mixture-of-experts experts) or --sweep (every head alone)");
  if (specs.empty() && v.flag("knockout")) throw InputError("ablate: --knockout keeps the --heads set; give --heads");
  const AblationParams base = baseParams(v, in.seed);
  int dropped = 0;
  const std::vector<PatchGroup> groups = toPatchGroups(*in.dataset, &dropped);

  AnalysisResult out;
  out.name = "ablate";
  out.json["analysis"] = "ablate";
  out.json["method"] = toString(base.method);
  std::string line;
  if (sweep) {
    AblationParams sweepParams = base;
    sweepParams.knockout = false;  // the sweep ablates one head at a time; knockout belongs to the head set
    line = runHeadSweep(*in.model, groups, sweepParams, v.flag("normalise"), out, ctx);
  }
  if (!specs.empty() || !experts.empty())
    line += (line.empty() ? "" : "\n") + runHeadSet(*in.model, groups, base, specs, experts, out, ctx);
  putPromptGroups(out, groups, dropped);
  out.summaryLine = line;
  return out;
}

}  // namespace

AnalysisPlugin ablatePlugin() {
  AnalysisPlugin p = makePlugin("ablate", "Ablation",
                                "head ablation: zero, mean, resample, uniform attention, attention forcing, knockout; or every head alone",
                                PluginInput::Dataset, runAblatePlugin);
  auto& d = p.descriptor;
  ParamInfo heads = makeParam("heads", ParamType::HeadList, "--heads",
                              "LAYER.HEAD list, e.g. 9.9,10.0; LAYER.HEAD@ROLE ablates the head only at the prompt's ROLE position "
                              "(with --knockout: keeps it only there), e.g. 9.9@END,5.5@S2,4.11@S1+1 for Wang et al.'s (head, position) "
                              "knockout");
  heads.roles = true;
  ParamInfo method = makeParam("method", ParamType::Choice, "--method",
                               "zero, mean (over the corrupted prompts), resample, uniform (attention over visible keys), force", "zero");
  method.choices = {"zero", "mean", "resample", "uniform", "force"};
  d.params = {
      heads,
      makeParam("experts", ParamType::HeadList, "--experts",
                "LAYER.EXPERT list of mixture-of-experts experts to ablate (zero or mean), e.g. 0.3,2.1: the expert's routed, "
                "weighted output (mlp.hook_expert_out) at --positions; with --heads, both together"),
      makeParam("sweep", ParamType::Bool, "--sweep",
                "also ablate every head alone: sweep [layer][head] (the metric after), head_effect, top_drops; prints the largest "
                "drops"),
      method,
      makeParam("knockout", ParamType::Bool, "--knockout", "keep --heads, ablate every other head"),
      makeParam("positions", ParamType::IntList, "--positions",
                "positions (query rows for uniform/force), e.g. -1; default all (force: the rows at or after the last forced key)"),
      makeParam("per_template", ParamType::Bool, "--per-template", "mean: per-template means (dataset template ids)"),
      makeParam("pooled", ParamType::Bool, "--pooled", "resample: from the pooled prompt × position vectors (default paired)"),
      makeParam("force_keys", ParamType::IntList, "--force-keys", "force: key positions, e.g. 3,7"),
      makeParam("force_weights", ParamType::String, "--force-weights", "force: weights over the keys, e.g. 0.75,0.25 (default uniform)"),
      makeParam("normalise", ParamType::Bool, "--normalise", "sweep: head_effect divided by |metric before| (default the raw Δ)"),
  };
  d.figureKeys = {"head_effect"};
  d.headlineKeys = {"method", "knockout", "ablated_heads", "metric_before", "metric_after", "accuracy_before", "accuracy_after", "top_drops"};
  d.exampleArgs = {"--heads", "3.0,3.1"};
  return p;
}

}  // namespace mechscope::analysis
