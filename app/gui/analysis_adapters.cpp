#include "app/gui/analysis_adapters.hpp"

#include <cmath>

#include "analysis/common/registry.hpp"
#include "app/gui/attention_analysis_adapters.hpp"
#include "app/gui/causal_analysis_adapters.hpp"
#include "core/common/errors.hpp"

namespace mechscope::gui {

AnalysisResult attentionOverview(const AttentionPatterns& p, int skipQueries) {
  const int L = p.layers, H = p.heads, P = p.positions;
  if (skipQueries < 0 || skipQueries >= P)
    throw InputError("attention overview: skip first queries = " + std::to_string(skipQueries) + ", expected 0 ≤ k < " +
                     std::to_string(P) + " (the prompt's length)");
  std::vector<double> bos(static_cast<std::size_t>(L * H)), dist(bos.size()), ent(bos.size());
  std::vector<double> perQuery(static_cast<std::size_t>(P), 0.0);
  for (int l = 0; l < L; ++l) {
    const float* layer = p.perLayer[static_cast<std::size_t>(l)].data();
    for (int h = 0; h < H; ++h) {
      double b = 0, d = 0, e = 0;
      for (int q = skipQueries; q < P; ++q) {
        const float* row = layer + (static_cast<std::size_t>(h) * P + q) * P;  // [key]
        b += row[0];
        for (int k = 0; k <= q; ++k) {
          d += row[k] * (q - k);
          if (row[k] > 0) e -= row[k] * std::log(row[k]);
        }
        perQuery[static_cast<std::size_t>(q)] += row[0] / (L * H);
      }
      const double n = P - skipQueries;
      bos[static_cast<std::size_t>(l * H + h)] = b / n;
      dist[static_cast<std::size_t>(l * H + h)] = d / n;
      ent[static_cast<std::size_t>(l * H + h)] = e / n;
    }
  }
  AnalysisResult r;
  r.analysis = "attention-overview";
  r.grids.push_back({L, H, bos, "Mass on the first token (sink score)", "mean attention to key 0", false});
  r.grids.push_back({L, H, dist, "Mean query–key distance", "tokens", false});
  r.grids.push_back({L, H, ent, "Mean attention entropy", "nats", false});
  views::LinePlotData line;
  line.title = "First-token mass per query (mean over heads)";
  line.yLabel = "attention to key 0";
  line.xLabels = p.labels;
  views::LineSeries s;
  s.name = "all heads";
  s.y = perQuery;
  for (int q = 0; q < skipQueries; ++q) s.y[static_cast<std::size_t>(q)] = NAN;
  line.series.push_back(std::move(s));
  r.lines.push_back(std::move(line));
  return r;
}

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
  std::vector<AnalysisAdapter> out;
  AnalysisAdapter overview;
  overview.name = "attention-overview";
  overview.title = "Overview";
  overview.summary = "Per-head sink score (mass on the first token), mean distance and entropy, from one forward pass (in-app)";
  overview.available = true;
  overview.params = {{"skip_queries", "Skip first queries", 1, 0, 1e6, {}, "Queries 0..k-1 are left out (BOS attends only to itself)"}};
  overview.run = [](const AnalysisInput& in, const QJsonObject& params, const RunContext& ctx) {
    if (!in.session) throw InputError("attention overview: no model loaded; open a model first");
    if (in.tokens.ids.empty()) throw InputError("attention overview: the prompt has no tokens; type a prompt first");
    const AttentionPatterns p = computePatterns(*in.session, in.tokens, ctx);
    AnalysisResult r = attentionOverview(p, params["skip_queries"].toInt(1));
    r.params = params;
    return r;
  };
  out.push_back(std::move(overview));

  for (const auto& info : analysis::analysisRegistry()) {
    AnalysisAdapter a;
    a.name = QString::fromStdString(info.name);
    a.title = a.name;
    a.summary = QString::fromStdString(info.summary);
    if (info.name == "patch") {
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
    } else if (info.name == "constraint-attention") {
      wireConstraintAdapter(a);
    } else if (info.name == "retrieval") {
      wireRetrievalAdapter(a);
    } else if (info.name == "circuit") {
      wireCircuitAdapter(a);
    } else if (info.name == "overlap") {
      wireOverlapAdapter(a);
    } else if (info.name == "dla") {
      wireDlaAdapter(a);
    } else if (info.name == "sinks") {
      wireSinksAdapter(a);
    } else if (info.name == "waad-fai") {
      wireWaadFaiAdapter(a);
    } else {
      // TODO(analysis adapters): wire analysis/<name> here when it lands: Params from the form, run(engine,
      // params, ctx), Result → grids (layer × head) and lines (per-token traces).
      a.available = false;
      a.note = info.available ? "landed in analysis/ but its GUI adapter is not wired yet (app/gui/analysis_adapters.cpp)"
                              : "not built yet: analysis/" + a.name + " has not landed";
    }
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace mechscope::gui
