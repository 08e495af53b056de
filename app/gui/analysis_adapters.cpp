#include "app/gui/analysis_adapters.hpp"

#include <algorithm>

#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/registry.hpp"
#include "app/gui/causal_analysis_adapters.hpp"
#include "app/gui/plugin_adapter.hpp"
#include "core/common/errors.hpp"

namespace mechscope::gui {

namespace {

AnalysisResult patchingSweep(const AnalysisInput& in, const QJsonObject& params, const RunContext& ctx, bool ablate) {
  if (!in.patching) throw InputError("needs the clean/corrupted pair: open the Patching panel and press Run clean + corrupted");
  PatchRequest base;
  const QString mode = params["mode"].toString();
  if (ablate) {
    base.intervention = mode == "mean" ? Intervention::AblateMean : mode == "uniform" ? Intervention::AblateUniform
                                                                                      : Intervention::AblateZero;
  } else {
    base.site = mode == "pattern" ? PatchSite::Pattern : PatchSite::Z;
    base.direction = params["direction"].toString().startsWith("corrupted") ? PatchDirection::CorruptIntoClean
                                                                            : PatchDirection::CleanIntoCorrupt;
  }
  const bool normalise = params["normalise"].toBool(true);
  AnalysisResult r;
  r.analysis = ablate ? "ablate" : "patch";
  r.params = params;
  const QString label = normalise ? "(d − d_corrupt) / (d_clean − d_corrupt)" : "logit diff";
  r.grids.push_back({in.patching->layers(), in.patching->heads(), in.patching->sweep(base, normalise, ctx),
                     (ablate ? "Ablation (" + mode + ")" : "Activation patching (" + mode + ")") + ": " + label, label, true});
  return r;
}

}  // namespace

std::vector<AnalysisAdapter> analysisAdapters() {
  analysis::installAnalysisPlugins();
  std::vector<AnalysisAdapter> out;
  for (const auto& info : analysis::analysisRegistry()) {
    AnalysisAdapter a;
    a.name = QString::fromStdString(info.name);
    a.title = a.name;
    a.summary = QString::fromStdString(info.summary);
    if (info.plugin) {
      a = pluginAdapter(*analysis::findPlugin(info.name));
    } else if (info.name == "patch") {
      a.title = "Patching";
      a.available = true;
      a.needsPatching = true;
      a.note = "in-app sweep over the Patching panel's pair: each head alone, one hooked forward per head";
      a.params = {{"mode", "Site", QString("z"), 0, 0, {"z", "pattern"}, "which activation of the head is patched"},
                  {"direction", "Direction", QString("clean → corrupted"), 0, 0, {"clean → corrupted", "corrupted → clean"}, {}},
                  {"normalise", "Normalise", true, 0, 0, {}, "(d − d_corrupt) / (d_clean − d_corrupt)"}};
      a.run = [](const AnalysisInput& in, const QJsonObject& params, const RunContext& ctx) {
        return patchingSweep(in, params, ctx, false);
      };
    } else if (info.name == "ablate") {
      wireAblationAdapter(a);
    } else if (info.name == "retrieval") {
      wireRetrievalAdapter(a);
    } else if (info.name == "circuit") {
      wireCircuitAdapter(a);
    } else if (info.name == "overlap") {
      wireOverlapAdapter(a);
    } else {
      // TODO(analysis adapters): wire analysis/<name> here when it lands: Params from the form, run(engine,
      // params, ctx), Result → grids (layer × head) and lines (per-token traces).
      a.available = false;
      a.note = info.available ? "landed in analysis/ but its GUI adapter is not wired yet (app/gui/analysis_adapters.cpp)"
                              : "not built yet: analysis/" + a.name + " has not landed";
    }
    if (!info.title.empty()) a.title = QString::fromStdString(info.title);
    out.push_back(std::move(a));
  }
  // The in-app overview is the first tab.
  std::stable_partition(out.begin(), out.end(), [](const AnalysisAdapter& a) { return a.name == "attention-overview"; });
  return out;
}

}  // namespace mechscope::gui
