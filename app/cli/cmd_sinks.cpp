// `mechscope-cli sinks`: primary/secondary attention sinks (docs/cli.md).
#include <ATen/ATen.h>

#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "analysis/common/datasets.hpp"
#include "analysis/sinks/sinks.hpp"
#include "app/cli/analysis_common_options.hpp"
#include "app/cli/command.hpp"

namespace mechscope::cli {
namespace {

struct SinksCliOptions {
  AnalysisCommonOptions common;
  analysis::SinksOptions sinks;
  std::string candidates;
  std::string hiddenStates = "hf";
};

void runSinksCommand(SinksCliOptions& o) {
  o.common.validate("sinks");
  if (!o.candidates.empty()) o.sinks.bosCandidates = analysis::parseIdList(o.candidates, "sinks --bos-candidates");
  o.sinks.hiddenStates = analysis::parseSinkHiddenStates(o.hiddenStates);
  attachStderrProgress("sinks");
  const LoadedModel m = loadAnalysisModel(o.common);
  const auto rows = readInputRows(o.common, m, "sinks");
  o.sinks.materialize = o.common.materialize;
  const auto result = analysis::runSinks(*m.model, rows, o.sinks, &processContext());
  const auto out = analysis::sinksToResult(result, o.sinks);
  int secondary = 0;
  for (const auto& s : result.sinks) secondary += s.label == "secondary";
  std::cout << fmt::format("sinks: {} rows, primary sink at position {} in row 0, mean sink rate {:.3f}, {} sink candidates ({} secondary)\n",
                           rows.size(), result.primary[0].position, result.sinkRate.mean().item<double>(), result.sinks.size(), secondary);
  writeAnalysisOutputs(o.common, out, m, o.common.materialize ? "materialized" : "probe");
}

const RegisterCommand reg_cmd_sinks{"sinks", 40, [](CLI::App& root) {
  auto o = std::make_shared<SinksCliOptions>();
  auto* sub = root.add_subcommand("sinks", "Attention sinks: sink scores, sink rate, secondary sinks, lifetimes, levels");
  o->common.add(sub);
  sub->add_option("--bos-position", o->sinks.bosPosition,
                  "Force the primary-sink position b (default: detected among --bos-candidates by mean hidden-state norm)");
  sub->add_option("--bos-candidates", o->candidates, "Positions competing for the primary sink, e.g. 0,1 (default 0,1,2)");
  sub->add_option("--hidden-states", o->hiddenStates,
                  "hf (default: HF hidden_states[1:], the last after the final norm, as the official code) or resid_post");
  sub->add_option("--sink-threshold", o->sinks.sinkThreshold, "Sink-rate threshold ε on the sink score (default 0.3)");
  sub->add_option("--cosine-threshold", o->sinks.cosineThreshold, "|cos| with the primary sink's hidden state (default 0.9)");
  sub->callback([o, sub] {
    o->common.finishCommandLine(sub);
    runSinksCommand(*o);
  });
}};

}  // namespace
}  // namespace mechscope::cli
