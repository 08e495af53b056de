#include "app/gui/attention_analysis_adapters.hpp"

#include <ATen/ATen.h>

#include <QJsonArray>

#include <algorithm>

#include "analysis/sinks/sinks.hpp"
#include "analysis/waad_fai/waad_fai.hpp"
#include "core/common/errors.hpp"

namespace mechscope::gui {

namespace {

std::vector<double> toVector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU, at::kDouble).contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

std::vector<int> toMarks(const std::vector<int64_t>& v) { return {v.begin(), v.end()}; }

void needPrompt(const AnalysisInput& in, const char* name) {
  if (!in.session) throw InputError(std::string(name) + ": no model loaded; open a model first");
  if (in.tokens.ids.empty()) throw InputError(std::string(name) + ": the prompt has no tokens; type a prompt first");
}

}  // namespace

void wireSinksAdapter(AnalysisAdapter& a) {
  a.title = "Sinks";
  a.available = true;
  a.note = "analysis/sinks on the prompt of the Model & prompt dock";
  a.params = {{"sink_threshold", "Sink-rate threshold ε", 0.3, 0.0, 1.0, {}, "a head counts as a sink head when its sink score > ε"},
              {"cosine_threshold", "Secondary-sink cosine", 0.9, 0.0, 1.0, {}, "|cos(h[p], h[BOS])| above which p is a sink"}};
  a.run = [](const AnalysisInput& in, const QJsonObject& params, const RunContext& ctx) {
    needPrompt(in, "sinks");
    analysis::SinksOptions o;
    o.sinkThreshold = params["sink_threshold"].toDouble(0.3);
    o.cosineThreshold = params["cosine_threshold"].toDouble(0.9);
    const auto r = analysis::runSinks(*in.session->model, {in.tokens.ids}, o, &ctx);
    AnalysisResult out;
    out.analysis = "sinks";
    out.params = params;
    const int L = static_cast<int>(r.sinkScore.size(0)), H = static_cast<int>(r.sinkScore.size(1));
    out.grids.push_back({L, H, toVector(r.sinkScore), "Primary-sink score (mean attention to BOS)", "sink score", false});
    views::LinePlotData rate;
    rate.title = "Sink rate per layer";
    rate.xLabel = "layer";
    rate.yLabel = QString("fraction of heads with score > %1").arg(o.sinkThreshold);
    rate.series.push_back({"sink rate", toVector(r.sinkRate), {}, {}, QColor()});
    out.lines.push_back(std::move(rate));
    QJsonArray sinks;
    for (const auto& s : r.sinks)
      sinks.append(QJsonObject{{"position", static_cast<qint64>(s.position)}, {"label", QString::fromStdString(s.label)},
                               {"creation_layer", s.creationLayer}, {"lifetime", s.lifetime}});
    out.params["detected_sinks"] = sinks;
    return out;
  };
}

void wireWaadFaiAdapter(AnalysisAdapter& a) {
  a.title = "WAAD/FAI";
  a.available = true;
  a.note = "analysis/waad_fai on the prompt of the Model & prompt dock";
  a.params = {{"window", "WAAD window W", 10, 1, 1e6, {}, "tokens of the windowed distance"},
              {"response_start", "Response start R", 0, 0, 1e9, {}, "only query rows t ≥ R count"},
              {"split_quantile", "Local/global quantile", 0.3, 0.01, 0.5, {}, "bottom/top fraction of heads by distance"}};
  a.run = [](const AnalysisInput& in, const QJsonObject& params, const RunContext& ctx) {
    needPrompt(in, "waad-fai");
    analysis::WaadFaiOptions o;
    o.window = params["window"].toInt(10);
    o.responseStart = params["response_start"].toInt(0);
    o.splitQuantile = params["split_quantile"].toDouble(0.3);
    const auto r = analysis::runWaadFai(*in.session->model, {in.tokens.ids}, o, &ctx);
    AnalysisResult out;
    out.analysis = "waad-fai";
    out.params = params;
    const int L = static_cast<int>(r.headDistance.size(0)), H = static_cast<int>(r.headDistance.size(1));
    out.grids.push_back({L, H, toVector(r.headDistance), "Mean head distance d(l, h)", "tokens", false});
    views::LinePlotData line;
    line.title = "WAAD and FAI per token";
    line.yLabel = "score";
    line.xLabels = in.tokens.display;
    if (!r.waad.empty()) line.series.push_back({"WAAD", r.waad[0], {}, toMarks(r.waadPeaks.empty() ? std::vector<int64_t>{} : r.waadPeaks[0]), QColor()});
    if (!r.fai.empty()) line.series.push_back({"FAI", r.fai[0], {}, toMarks(r.faiPeaks.empty() ? std::vector<int64_t>{} : r.faiPeaks[0]), QColor()});
    out.lines.push_back(std::move(line));
    QJsonArray local, global;
    for (const auto& [l, h] : r.localHeads) local.append(QString("%1.%2").arg(l).arg(h));
    for (const auto& [l, h] : r.globalHeads) global.append(QString("%1.%2").arg(l).arg(h));
    out.params["local_heads"] = local;
    out.params["global_heads"] = global;
    return out;
  };
}

}  // namespace mechscope::gui
