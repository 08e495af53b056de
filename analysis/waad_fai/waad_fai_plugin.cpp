// WAAD/FAI in the plugin shape: `mechscope-cli waad-fai`, the GUI's WAAD/FAI panel and batch plans derive
// from this table and run runWaadFai (docs/metrics.md §5).
#include <ATen/ATen.h>

#include "analysis/waad_fai/waad_fai.hpp"

namespace mechscope::analysis {

namespace {

AnalysisResult runWaadFaiPlugin(const PluginInputs& in, const ParamValues& params, const RunContext* ctx) {
  WaadFaiOptions o;
  o.window = params.integer("window");
  if (params.given("fai_horizon")) std::tie(o.faiMin, o.faiMax) = params.range("fai_horizon");
  const std::vector<int64_t> starts = params.integers("response_start");
  if (starts.size() == 1) o.responseStart = starts[0];
  else o.responseStarts = starts;
  o.splitQuantile = params.number("split_quantile");
  o.tokenQuantile = params.number("token_quantile");
  o.peakPercentile = params.number("peak_percentile");
  o.middleLayers = params.text("layers") == "middle";
  o.receiverHeads = static_cast<int>(params.integer("receiver_heads"));
  o.peakLag = params.integer("peak_lag");
  o.predictions = !params.flag("no_predictions");
  o.materialize = params.flag("materialize");
  const WaadFaiResult r = runWaadFai(*in.model, in.rows, o, ctx);
  AnalysisResult out = waadFaiToResult(r, o);
  out.json["n_local_heads"] = static_cast<int64_t>(r.localHeads.size());
  out.json["n_global_heads"] = static_cast<int64_t>(r.globalHeads.size());
  out.json["n_receiver_heads"] = static_cast<int64_t>(r.receiverHeads.size());
  return out;
}

}  // namespace

AnalysisPlugin waadFaiPlugin() {
  AnalysisPlugin p = makePlugin("waad-fai", "WAAD/FAI",
                                "preplan/anchor metrics: head distance, local/global heads, WAAD and FAI per token",
                                PluginInput::TokenRows, runWaadFaiPlugin);
  auto& d = p.descriptor;
  ParamInfo layers = makeParam("layers", ParamType::Choice, "--layers", "all, or middle: five evenly spaced layers of the middle third", "all");
  layers.choices = {"all", "middle"};
  d.params = {
      bounded(makeParam("window", ParamType::Int, "--window", "WAAD window W", "10"), 1, 1e12),
      makeParam("fai_horizon", ParamType::Range, "--fai-horizon", "FAI horizon a:b = {s+a ≤ t ≤ s+b} (default: every t > s)"),
      makeParam("response_start", ParamType::IntList, "--response-start",
                "first response position R: only rows t ≥ R count; R0,R1,... gives one per row", "0"),
      bounded(makeParam("split_quantile", ParamType::Float, "--split-quantile", "bottom/top fraction of heads by distance", "0.3"), 0, 0.5),
      bounded(makeParam("token_quantile", ParamType::Float, "--token-quantile", "top fraction for preplan/anchor tokens", "0.4"), 0, 1),
      bounded(makeParam("peak_percentile", ParamType::Float, "--peak-percentile", "peaks: local maxima above this percentile", "60"), 0, 100),
      layers,
      bounded(makeParam("receiver_heads", ParamType::Int, "--receiver-heads", "receiver heads: top k by column-mass kurtosis", "20"), 0, 1e9),
      bounded(makeParam("peak_lag", ParamType::Int, "--peak-lag", "an FAI peak within [t, t + lag] of a WAAD peak t follows it", "10"), 0, 1e12),
      makeParam("no_predictions", ParamType::Bool, "--no-predictions", "skip the per-token entropy / log-probability (no unembedding of every position)"),
      makeParam("materialize", ParamType::Bool, "--materialize", "read full attention patterns (hook_pattern) instead of the streaming probe")};
  d.figureKeys = {"head_distance"};
  d.headlineKeys = {"n_local_heads", "n_global_heads", "n_receiver_heads"};
  return p;
}

}  // namespace mechscope::analysis
