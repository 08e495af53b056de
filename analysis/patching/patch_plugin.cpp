// `patch` in the plugin shape: batched activation patching, attribution patching and path patching of
// clean vs corrupted prompts over the dataset's length groups. mechscope-cli's subcommand, the GUI's
// panel (on a dataset, or on the Patching panel's pair) and batch plans derive from this table.
// JSON contract (docs/cli.md): scores [L][H] (head components) / [L][H][pos] (per position) / [L] /
// [L][pos] (layer components), metric_clean, metric_corrupt, normalisation, layout, the raw patched
// metric per prompt; path patching: scores and effect [L][H], metric_patched [sender][prompt], senders.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include <fmt/format.h>

#include "analysis/ablation/ablation_groups.hpp"
#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/datasets.hpp"
#include "analysis/patching/activation_patching.hpp"
#include "analysis/patching/patch_groups.hpp"
#include "analysis/patching/path_patching.hpp"
#include "core/common/errors.hpp"

namespace mechscope::analysis {

namespace {

/// "3.0.q,3.1.k" → receivers; "logits" → none (the residual read by the logits).
std::vector<Receiver> parseReceivers(const std::string& text) {
  std::vector<Receiver> out;
  if (text == "logits") return out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    const auto d1 = item.find('.'), d2 = item.rfind('.');
    if (d1 == std::string::npos || d2 == d1) throw InputError(fmt::format("--path-receivers: '{}' is not LAYER.HEAD.q|k|v|z", item));
    try {
      out.push_back({{std::stoi(item.substr(0, d1)), std::stoi(item.substr(d1 + 1, d2 - d1 - 1))}, parseReceiverSite(item.substr(d2 + 1))});
    } catch (const std::invalid_argument&) {
      throw InputError(fmt::format("--path-receivers: '{}' is not LAYER.HEAD.q|k|v|z", item));
    }
  }
  return out;
}

/// The `k` heads of largest |score| of a [layer, head] grid, as {"head": "L.H", "score"} (score rounded to
/// 4 decimals: the headline's summary; the exact values are in "scores").
nlohmann::json topHeads(const at::Tensor& scores, int64_t k) {
  const at::Tensor s = scores.to(at::kDouble).contiguous();
  const at::Tensor flat = s.flatten();
  const at::Tensor top = std::get<1>(flat.abs().topk(std::min<int64_t>(k, flat.numel())));
  nlohmann::json out = nlohmann::json::array();
  for (int64_t i = 0; i < top.numel(); ++i) {
    const int64_t c = top[i].item<int64_t>();
    out.push_back({{"head", fmt::format("{}.{}", c / s.size(1), c % s.size(1))},
                   {"score", std::round(flat[c].item<double>() * 1e4) / 1e4}});
  }
  return out;
}

AnalysisResult runPathPatch(const PluginInputs& in, const ParamValues& params, const std::vector<PatchGroup>& groups,
                            int dropped, const RunContext* ctx) {
  const ModelConfig& c = in.model->config();
  PathPatchParams pp;
  const std::string variant = params.text("path_variant");
  pp.variant = variant == "merullo" ? PathVariant::Merullo : PathVariant::Ioi;
  const std::string receivers = params.text("path_receivers");
  pp.receivers = parseReceivers(receivers);
  if (params.given("path_senders")) pp.senders = params.heads("path_senders", c.nLayers, c.nHeads);
  pp.senderPositions = params.integers("sender_positions");
  pp.receiverPositions = params.integers("receiver_positions");
  if (params.given("position_role")) pp.positionRole = params.text("position_role");
  pp.freezeMlps = params.flag("freeze_mlps");
  pp.maxBatchRows = params.integer("max_batch_rows");
  const PathPatchResult pr = pathPatchGroups(*in.model, groups, pp, ctx);
  AnalysisResult r;
  r.name = "patch";
  r.json["analysis"] = "patch";
  r.json["method"] = "path";
  r.json["variant"] = variant;
  r.json["receivers"] = receivers;
  r.json["freeze_mlps"] = pp.freezeMlps;
  if (!pp.positionRole.empty()) r.json["position_role"] = pp.positionRole;
  r.json["scores"] = tensorToJson(pr.scores);
  r.json["effect"] = tensorToJson(pr.effect);
  r.json["metric_patched"] = tensorToJson(pr.metricPatched);
  r.json["senders"] = nlohmann::json::array();  // the rows of metric_patched
  for (const auto& s : pr.senders) r.json["senders"].push_back(fmt::format("{}.{}", s.layer, s.head));
  r.json["metric_clean"] = pr.metricClean;
  r.json["metric_corrupt"] = pr.metricCorrupt;
  r.json["normalisation"] = toString(pr.normalisation);
  r.json["layout"] = "[layer][head]";
  putPromptGroups(r, groups, dropped);
  r.addArray("scores", pr.scores);
  r.addArray("effect", pr.effect);
  r.addArray("metric_patched", pr.metricPatched);
  return r;
}

AnalysisResult runPatch(const PluginInputs& in, const ParamValues& params, const RunContext* ctx) {
  const CausalDataset& ds = *in.dataset;
  int dropped = 0;
  const std::vector<PatchGroup> groups = toPatchGroups(ds, &dropped);
  if (params.given("path_receivers")) return runPathPatch(in, params, groups, dropped, ctx);

  PatchParams p;
  p.component = parsePatchComponent(params.text("component"));
  p.perPosition = params.flag("per_position");
  if (params.given("position_role")) p.positionRole = params.text("position_role");
  p.normalisation = parseNormalisation(params.flag("noising") ? "noising" : params.text("normalisation"));
  p.maxBatchRows = params.integer("max_batch_rows");
  const std::string method = params.text("method");

  AnalysisResult r;
  r.name = "patch";
  auto put = [&](const PatchResult& pr, const std::string& prefix) {
    r.json[prefix + "scores"] = tensorToJson(pr.scores);
    r.json[prefix + "metric_patched"] = tensorToJson(pr.metricPatched);
    r.addArray(prefix + "scores", pr.scores);
    r.addArray(prefix + "metric_patched", pr.metricPatched);
  };
  PatchResult main;
  if (method != "attribution") {
    main = activationPatchGroups(*in.model, groups, p, ctx);
    put(main, "");
  }
  if (method != "exact") {
    const PatchResult attr = attributionPatchGroups(*in.model, groups, p, ctx);
    if (method == "attribution") {
      main = attr;
      put(attr, "");
    } else {
      put(attr, "attribution_");
      r.json["attribution_max_abs_error"] = (attr.scores - main.scores).abs().max().item<double>();
    }
  }
  const bool heads = isHeadComponent(p.component);
  r.json["analysis"] = "patch";
  r.json["method"] = method;
  r.json["component"] = toString(p.component);
  r.json["per_position"] = p.perPosition;
  if (!p.positionRole.empty()) r.json["position_role"] = p.positionRole;
  const std::string unit = p.component == PatchComponent::ExpertOut ? "[expert]" : "[head]";
  r.json["layout"] = heads ? "[layer]" + unit + (p.perPosition ? "[pos]" : "") : (p.perPosition ? "[layer][pos]" : "[layer]");
  r.json["metric"] = "logit_diff";
  r.json["metric_clean"] = main.metricClean;
  r.json["metric_corrupt"] = main.metricCorrupt;
  r.json["metric_clean_per_prompt"] = tensorToJson(main.metricCleanPerPrompt);
  r.json["metric_corrupt_per_prompt"] = tensorToJson(main.metricCorruptPerPrompt);
  r.json["normalisation"] = toString(p.normalisation);
  putPromptGroups(r, groups, dropped);
  r.json["dropped_words"] = ds.droppedWords;
  r.json["forwards"] = main.forwards;
  if (heads && !p.perPosition) r.json[p.component == PatchComponent::ExpertOut ? "top_experts" : "top_heads"] = topHeads(main.scores, 5);
  return r;
}

}  // namespace

AnalysisPlugin patchPlugin() {
  AnalysisPlugin p = makePlugin("patch", "Patching",
                                "activation patching (batched), attribution patching and path patching, clean vs corrupted",
                                PluginInput::Dataset, runPatch);
  auto& d = p.descriptor;
  ParamInfo component = makeParam("component", ParamType::Choice, "--component",
                                  "the patched activation: resid_pre, attn_out, mlp_out (per layer), head_out (z), q, k, v, "
                                  "pattern (per head), expert_out (per mixture-of-experts expert)",
                                  "head_out");
  component.choices = {"resid_pre", "attn_out", "mlp_out", "head_out", "q", "k", "v", "pattern", "expert_out"};
  ParamInfo normalisation = makeParam("normalisation", ParamType::Choice, "--normalisation",
                                      "denoising (patched − corrupt)/(clean − corrupt), noising (clean − patched)/(clean − corrupt), "
                                      "or raw",
                                      "denoising");
  normalisation.choices = {"denoising", "noising", "raw"};
  ParamInfo method = makeParam("method", ParamType::Choice, "--method",
                               "exact, attribution, or both (attribution next to exact)", "exact");
  method.choices = {"exact", "attribution", "both"};
  ParamInfo variant = makeParam("path_variant", ParamType::Choice, "--path-variant", "path patching: ioi or merullo", "ioi");
  variant.choices = {"ioi", "merullo"};
  ParamInfo maxRows = makeParam("max_batch_rows", ParamType::Int, "--max-batch-rows", "rows (variants × prompts) per batched forward", "256");
  maxRows.minimum = 1;
  d.params = {
      component,
      makeParam("per_position", ParamType::Bool, "--per-position", "one cell per position instead of all positions"),
      normalisation,
      makeParam("noising", ParamType::Bool, "--noising", "shorthand for --normalisation noising"),
      method,
      makeParam("path_receivers", ParamType::String, "--path-receivers",
                "path patching: 'logits' or LAYER.HEAD.q|k|v|z list, e.g. 9.9.q,9.6.q"),
      makeParam("path_senders", ParamType::HeadList, "--path-senders",
                "path patching: LAYER.HEAD list (default: ioi every head below the highest receiver layer; merullo every head "
                "in layers up to the lowest receiver layer, receivers excluded)"),
      variant,
      makeParam("sender_positions", ParamType::IntList, "--sender-positions",
                "path patching: sender positions, e.g. -1 (default all / last for merullo)"),
      makeParam("receiver_positions", ParamType::IntList, "--receiver-positions",
                "path patching: receiver positions (default the sender positions)"),
      makeParam("position_role", ParamType::String, "--position-role",
                "patch only each prompt's position of this role (IOI: IO, S1, S1+1, S2, END; colored-objects: ANSWER, "
                "INCORRECT1, INCORRECT2, OBJ1, OBJ1+1, OBJ2, END); path patching: the sender and receiver position"),
      makeParam("freeze_mlps", ParamType::Bool, "--freeze-mlps",
                "path patching: freeze every MLP to the clean run (default: recomputed, as both papers' code)"),
      maxRows,
  };
  d.figureKeys = {"scores"};
  d.headlineKeys = {"method",         "component", "receivers",     "prompts",   "prompts_dropped",
                    "metric_clean",   "metric_corrupt", "normalisation", "top_heads"};
  return p;
}

}  // namespace mechscope::analysis
