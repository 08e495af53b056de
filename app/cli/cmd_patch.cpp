// `mechscope-cli patch`: batched activation patching (and attribution patching) of clean vs corrupted
// prompts; JSON contract: scores [L][H] (head components) / [L][H][pos] (per position), metric_clean,
// metric_corrupt, normalisation, plus the raw patched metric per prompt.
#include <ATen/ATen.h>

#include <iostream>
#include <sstream>

#include <fmt/format.h>

#include "analysis/common/datasets.hpp"
#include "analysis/common/result_io.hpp"
#include "analysis/patching/activation_patching.hpp"
#include "analysis/patching/patch_groups.hpp"
#include "analysis/patching/path_patching.hpp"
#include "app/cli/analysis_common_options.hpp"
#include "app/cli/causal_dataset_options.hpp"
#include "app/cli/command.hpp"
#include "core/common/errors.hpp"

namespace mechscope::cli {
namespace {

struct PatchOptions {
  AnalysisCommonOptions common;
  CausalDatasetOptions data;
  std::string component = "head_out";
  std::string normalisation = "denoising";
  std::string method = "exact";
  bool perPosition = false;
  bool noising = false;
  int64_t maxBatchRows = 256;
  std::string pathReceivers, pathSenders, pathVariant = "ioi", senderPositions, receiverPositions, positionRole;
  bool freezeMlps = false;
};

/// "3.0.q,3.1.k" → receivers; "logits" → none (the residual read by the logits).
std::vector<analysis::Receiver> parseReceivers(const std::string& text) {
  std::vector<analysis::Receiver> out;
  if (text == "logits") return out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    const auto d1 = item.find('.'), d2 = item.rfind('.');
    if (d1 == std::string::npos || d2 == d1) throw InputError(fmt::format("--path-receivers: '{}' is not LAYER.HEAD.q|k|v|z", item));
    try {
      out.push_back({{std::stoi(item.substr(0, d1)), std::stoi(item.substr(d1 + 1, d2 - d1 - 1))},
                     analysis::parseReceiverSite(item.substr(d2 + 1))});
    } catch (const std::invalid_argument&) {
      throw InputError(fmt::format("--path-receivers: '{}' is not LAYER.HEAD.q|k|v|z", item));
    }
  }
  return out;
}

void runPatch(PatchOptions& o) {
  o.common.validateOutputs("patch");
  if (o.method != "exact" && o.method != "attribution" && o.method != "both")
    throw InputError(fmt::format("patch: --method must be exact, attribution or both, found '{}'", o.method));
  attachStderrProgress("patch");
  LoadedModel m = loadAnalysisModel(o.common);
  const analysis::CausalDataset ds = o.data.load(m);
  int dropped = 0;
  const std::vector<analysis::PatchGroup> groups = analysis::toPatchGroups(ds, &dropped);
  const int64_t nPrompts = analysis::groupPromptCount(groups);
  analysis::PatchParams p;
  p.component = analysis::parsePatchComponent(o.component);
  p.perPosition = o.perPosition;
  p.positionRole = o.positionRole;
  p.normalisation = analysis::parseNormalisation(o.noising ? "noising" : o.normalisation);
  p.maxBatchRows = o.maxBatchRows;
  const RunContext& ctx = processContext();

  analysis::AnalysisResult r;
  r.name = "patch";
  if (!o.pathReceivers.empty()) {
    analysis::PathPatchParams pp;
    if (o.pathVariant == "ioi") pp.variant = analysis::PathVariant::Ioi;
    else if (o.pathVariant == "merullo") pp.variant = analysis::PathVariant::Merullo;
    else throw InputError(fmt::format("patch: --path-variant must be ioi or merullo, found '{}'", o.pathVariant));
    pp.receivers = parseReceivers(o.pathReceivers);
    if (!o.pathSenders.empty()) pp.senders = parseHeadList(o.pathSenders, "--path-senders");
    if (!o.senderPositions.empty()) pp.senderPositions = analysis::parseIdList(o.senderPositions, "--sender-positions");
    if (!o.receiverPositions.empty()) pp.receiverPositions = analysis::parseIdList(o.receiverPositions, "--receiver-positions");
    pp.positionRole = o.positionRole;
    pp.freezeMlps = o.freezeMlps;
    pp.maxBatchRows = o.maxBatchRows;
    const analysis::PathPatchResult pr = analysis::pathPatchGroups(*m.model, groups, pp, &ctx);
    r.json["analysis"] = "patch";
    r.json["method"] = "path";
    r.json["variant"] = o.pathVariant;
    r.json["receivers"] = o.pathReceivers;
    r.json["freeze_mlps"] = pp.freezeMlps;
    if (!pp.positionRole.empty()) r.json["position_role"] = pp.positionRole;
    r.json["scores"] = analysis::tensorToJson(pr.scores);
    r.json["effect"] = analysis::tensorToJson(pr.effect);
    r.json["metric_patched"] = analysis::tensorToJson(pr.metricPatched);
    r.json["senders"] = nlohmann::json::array();  // the rows of metric_patched
    for (const auto& s : pr.senders) r.json["senders"].push_back(fmt::format("{}.{}", s.layer, s.head));
    r.json["metric_clean"] = pr.metricClean;
    r.json["metric_corrupt"] = pr.metricCorrupt;
    r.json["normalisation"] = analysis::toString(pr.normalisation);
    r.json["layout"] = "[layer][head]";
    putPromptGroups(r, groups, dropped);
    r.addArray("scores", pr.scores);
    r.addArray("effect", pr.effect);
    r.addArray("metric_patched", pr.metricPatched);
    writeAnalysisOutputs(o.common, r, m, "materialized");
    std::cout << fmt::format("path patching → {}: LD clean {:.4f}, corrupt {:.4f}, {} normalisation\n", o.pathReceivers,
                             pr.metricClean, pr.metricCorrupt, analysis::toString(pr.normalisation));
    return;
  }
  auto put = [&](const analysis::PatchResult& pr, const std::string& prefix) {
    r.json[prefix + "scores"] = analysis::tensorToJson(pr.scores);
    r.json[prefix + "metric_patched"] = analysis::tensorToJson(pr.metricPatched);
    r.addArray(prefix + "scores", pr.scores);
    r.addArray(prefix + "metric_patched", pr.metricPatched);
  };
  analysis::PatchResult main;
  if (o.method != "attribution") {
    main = analysis::activationPatchGroups(*m.model, groups, p, &ctx);
    put(main, "");
  }
  if (o.method != "exact") {
    const analysis::PatchResult attr = analysis::attributionPatchGroups(*m.model, groups, p, &ctx);
    if (o.method == "attribution") {
      main = attr;
      put(attr, "");
    } else {
      put(attr, "attribution_");
      r.json["attribution_max_abs_error"] = (attr.scores - main.scores).abs().max().item<double>();
    }
  }
  r.json["analysis"] = "patch";
  r.json["method"] = o.method;
  r.json["component"] = analysis::toString(p.component);
  r.json["per_position"] = p.perPosition;
  if (!p.positionRole.empty()) r.json["position_role"] = p.positionRole;
  r.json["layout"] = analysis::isHeadComponent(p.component) ? (p.perPosition ? "[layer][head][pos]" : "[layer][head]")
                                                            : (p.perPosition ? "[layer][pos]" : "[layer]");
  r.json["metric"] = "logit_diff";
  r.json["metric_clean"] = main.metricClean;
  r.json["metric_corrupt"] = main.metricCorrupt;
  r.json["metric_clean_per_prompt"] = analysis::tensorToJson(main.metricCleanPerPrompt);
  r.json["metric_corrupt_per_prompt"] = analysis::tensorToJson(main.metricCorruptPerPrompt);
  r.json["normalisation"] = analysis::toString(p.normalisation);
  putPromptGroups(r, groups, dropped);
  r.json["dropped_words"] = ds.droppedWords;
  r.json["forwards"] = main.forwards;
  writeAnalysisOutputs(o.common, r, m, "materialized");
  std::cout << fmt::format("patch {}: {} prompts ({} dropped), LD clean {:.4f}, corrupt {:.4f}, {} normalisation\n",
                           analysis::toString(p.component), nPrompts, dropped, main.metricClean,
                           main.metricCorrupt, analysis::toString(p.normalisation));
  if (!p.perPosition && analysis::isHeadComponent(p.component)) {
    const at::Tensor s = main.scores.contiguous();
    const at::Tensor flat = s.flatten().abs();
    const at::Tensor top = std::get<1>(flat.topk(std::min<int64_t>(5, flat.numel())));
    for (int64_t i = 0; i < top.numel(); ++i) {
      const int64_t k = top[i].item<int64_t>();
      std::cout << fmt::format("  {}.{}  {:+.4f}\n", k / s.size(1), k % s.size(1), s.flatten()[k].item<double>());
    }
  }
}

const RegisterCommand reg_cmd_patch{"patch", 40, [](CLI::App& root) {
  auto o = std::make_shared<PatchOptions>();
  auto* sub = root.add_subcommand("patch", "Activation patching (batched) and attribution patching, clean vs corrupted");
  sub->add_option("--model", o->common.model, "Hugging Face model folder")->required();
  o->data.add(sub, "ioi, colored-objects (generated with the tokenizer) or FILE.jsonl", false,
              "JSON file: [[ids], ...] corrupted prompts (same shape)");
  sub->add_option("--component", o->component, "resid_pre, attn_out, mlp_out, head_out (z), q, k, v, pattern");
  sub->add_flag("--per-position", o->perPosition, "one cell per position instead of all positions");
  sub->add_option("--normalisation", o->normalisation, "denoising (default), noising, raw");
  sub->add_flag("--noising", o->noising, "shorthand for --normalisation noising");
  sub->add_option("--method", o->method, "exact (default), attribution, or both (attribution next to exact)");
  sub->add_option("--path-receivers", o->pathReceivers, "path patching: 'logits' or LAYER.HEAD.q|k|v|z list, e.g. 9.9.q,9.6.q");
  sub->add_option("--path-senders", o->pathSenders, "path patching: LAYER.HEAD list (default: ioi every head below the highest receiver layer; merullo every head in "
                  "layers up to the lowest receiver layer, receivers excluded)");
  sub->add_option("--path-variant", o->pathVariant, "path patching: ioi (default) or merullo");
  sub->add_option("--sender-positions", o->senderPositions, "path patching: sender positions, e.g. -1 (default all / last for merullo)");
  sub->add_option("--receiver-positions", o->receiverPositions, "path patching: receiver positions (default the sender positions)");
  sub->add_option("--position-role", o->positionRole,
                  "patch only each prompt's position of this role (IOI: IO, S1, S1+1, S2, END; colored-objects: ANSWER, INCORRECT1, "
                  "INCORRECT2, OBJ1, OBJ1+1, OBJ2, END); path patching: the sender and receiver position");
  sub->add_flag("--freeze-mlps", o->freezeMlps, "path patching: freeze every MLP to the clean run (default: recomputed, as both papers' code)");
  sub->add_option("--max-batch-rows", o->maxBatchRows, "rows (variants × prompts) per batched forward (default 256)");
  o->common.addRunAndOutputs(sub);
  sub->callback([o, sub] {
    o->common.finishCommandLine(sub);
    runPatch(*o);
  });
}};

}  // namespace
}  // namespace mechscope::cli
