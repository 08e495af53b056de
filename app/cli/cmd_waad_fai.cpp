// `mechscope-cli waad-fai`: head distance, local/global heads, WAAD and FAI per token (docs/cli.md).
#include <ATen/ATen.h>

#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "analysis/common/datasets.hpp"
#include "analysis/waad_fai/waad_fai.hpp"
#include "app/cli/analysis_common_options.hpp"
#include "app/cli/command.hpp"
#include "core/common/errors.hpp"

namespace mechscope::cli {
namespace {

struct WaadCliOptions {
  AnalysisCommonOptions common;
  analysis::WaadFaiOptions waad;
  std::string horizon;
  std::string layers = "all";
  std::string responseStart;
  bool noPredictions = false;
};

void runWaadCommand(WaadCliOptions& o) {
  o.common.validate("waad-fai");
  if (!o.horizon.empty()) {
    const auto [a, b] = parseRange(o.horizon, "waad-fai --fai-horizon");
    o.waad.faiMin = a;
    o.waad.faiMax = b;
  }
  if (o.layers != "all" && o.layers != "middle")
    throw InputError(fmt::format("waad-fai: --layers must be 'all' or 'middle', found '{}'", o.layers));
  o.waad.middleLayers = o.layers == "middle";
  o.waad.predictions = !o.noPredictions;
  if (!o.responseStart.empty()) {
    const auto starts = analysis::parseIdList(o.responseStart, "waad-fai --response-start");
    if (starts.size() == 1) o.waad.responseStart = starts[0];
    else o.waad.responseStarts = starts;
  }
  o.waad.materialize = o.common.materialize;
  attachStderrProgress("waad-fai");
  const LoadedModel m = loadAnalysisModel(o.common);
  const auto rows = readInputRows(o.common, m, "waad-fai");
  const auto result = analysis::runWaadFai(*m.model, rows, o.waad, &processContext());
  std::cout << fmt::format("waad-fai: {} rows, {} local / {} global / {} receiver heads, {} preplan and {} anchor tokens in row 0\n",
                           rows.size(), result.localHeads.size(), result.globalHeads.size(), result.receiverHeads.size(),
                           result.preplan[0].size(), result.anchor[0].size());
  writeAnalysisOutputs(o.common, analysis::waadFaiToResult(result, o.waad), m, o.common.materialize ? "materialized" : "probe");
}

const RegisterCommand reg_cmd_waad_fai{"waad-fai", 41, [](CLI::App& root) {
  auto o = std::make_shared<WaadCliOptions>();
  auto* sub = root.add_subcommand("waad-fai", "Preplan/anchor metrics: head distance, local/global heads, WAAD and FAI per token");
  o->common.add(sub);
  sub->add_option("--window", o->waad.window, "WAAD window W (default 10)");
  sub->add_option("--fai-horizon", o->horizon, "FAI horizon a:b = {s+a ≤ t ≤ s+b} (default: every t > s)");
  sub->add_option("--response-start", o->responseStart,
                  "First response position R: only rows t ≥ R count (default 0); R0,R1,... gives one per row");
  sub->add_option("--split-quantile", o->waad.splitQuantile, "Bottom/top fraction of heads by distance (default 0.3)");
  sub->add_option("--token-quantile", o->waad.tokenQuantile, "Top fraction for preplan/anchor tokens (default 0.4)");
  sub->add_option("--peak-percentile", o->waad.peakPercentile, "Peaks: local maxima above this percentile (default 60)");
  sub->add_option("--layers", o->layers, "all (default) or middle: five evenly spaced layers of the middle third");
  sub->add_option("--receiver-heads", o->waad.receiverHeads, "Receiver heads: top k by column-mass kurtosis (default 20)");
  sub->add_option("--peak-lag", o->waad.peakLag, "FAI peak within [t, t + lag] of a WAAD peak t counts as following it (default 10)");
  sub->add_flag("--no-predictions", o->noPredictions, "Skip the per-token entropy / log-probability (no unembedding of every position)");
  sub->callback([o, sub] {
    o->common.finishCommandLine(sub);
    runWaadCommand(*o);
  });
}};

}  // namespace
}  // namespace mechscope::cli
