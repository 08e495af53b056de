// The sinks analysis in the plugin shape: `mechscope-cli sinks`, the GUI's Sinks panel and batch plans
// derive from this table and run runSinks (docs/metrics.md §2).
#include <ATen/ATen.h>

#include "analysis/sinks/sinks.hpp"

namespace mechscope::analysis {

namespace {

AnalysisResult runSinksPlugin(const PluginInputs& in, const ParamValues& params, const RunContext* ctx) {
  SinksOptions o;
  o.bosPosition = params.integer("bos_position");
  o.bosCandidates = params.integers("bos_candidates");
  o.sinkThreshold = params.number("sink_threshold");
  o.cosineThreshold = params.number("cosine_threshold");
  o.hiddenStates = parseSinkHiddenStates(params.text("hidden_states"));
  o.materialize = params.flag("materialize");
  const SinksResult r = runSinks(*in.model, in.rows, o, ctx);
  AnalysisResult out = sinksToResult(r, o);
  int64_t secondary = 0;
  for (const auto& s : r.sinks) secondary += s.label == "secondary";
  out.json["mean_sink_rate"] = r.sinkRate.mean().item<double>();
  out.json["sink_candidates"] = static_cast<int64_t>(r.sinks.size());
  out.json["secondary_count"] = secondary;
  out.json["primary_position"] = r.primary.empty() ? int64_t{-1} : r.primary[0].position;
  return out;
}

}  // namespace

AnalysisPlugin sinksPlugin() {
  AnalysisPlugin p = makePlugin("sinks", "Sinks",
                                "primary/secondary attention sinks: sink scores, sink rate, lifetimes, levels",
                                PluginInput::TokenRows, runSinksPlugin);
  auto& d = p.descriptor;
  ParamInfo bos = makeParam("bos_position", ParamType::Int, "--bos-position",
                            "force the primary-sink position b; -1: detected among --bos-candidates by mean hidden-state norm", "-1");
  bos.minimum = -1;
  ParamInfo eps = makeParam("sink_threshold", ParamType::Float, "--sink-threshold", "sink-rate threshold ε on the sink score", "0.3");
  eps.minimum = 0;
  eps.maximum = 1;
  ParamInfo cosine = makeParam("cosine_threshold", ParamType::Float, "--cosine-threshold", "|cos| with the primary sink's hidden state", "0.9");
  cosine.minimum = 0;
  cosine.maximum = 1;
  ParamInfo hidden = makeParam("hidden_states", ParamType::Choice, "--hidden-states",
                               "hf: HF hidden_states[1:], the last after the final norm, as the official code; or resid_post", "hf");
  hidden.choices = {"hf", "resid_post"};
  d.params = {bos, makeParam("bos_candidates", ParamType::IntList, "--bos-candidates", "positions competing for the primary sink", "0,1,2"),
              eps, cosine, hidden,
              makeParam("materialize", ParamType::Bool, "--materialize", "read full attention patterns (hook_pattern) instead of the streaming probe")};
  d.figureKeys = {"sink_score"};
  d.headlineKeys = {"primary_position", "mean_sink_rate", "sink_candidates", "secondary_count"};
  return p;
}

}  // namespace mechscope::analysis
