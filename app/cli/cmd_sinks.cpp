// `mechscope-cli sinks`: primary/secondary attention sinks (docs/cli.md).
#include <ATen/ATen.h>

#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "analysis/sinks/sinks.hpp"
#include "app/cli/analysis_common_options.hpp"
#include "app/cli/command.hpp"

namespace mechscope::cli {
namespace {

struct SinksCliOptions {
  AnalysisCommonOptions common;
  analysis::SinksOptions sinks;
};

void runSinksCommand(SinksCliOptions& o) {
  o.common.validate("sinks");
  attachStderrProgress("sinks");
  const LoadedModel m = loadAnalysisModel(o.common);
  const auto rows = readInputRows(o.common, m, "sinks");
  o.sinks.materialize = o.common.materialize;
  const auto result = analysis::runSinks(*m.model, rows, o.sinks, &processContext());
  const auto out = analysis::sinksToResult(result, o.sinks);
  int secondary = 0;
  for (const auto& s : result.sinks) secondary += s.label == "secondary";
  std::cout << fmt::format("sinks: {} rows, mean sink rate {:.3f}, {} sink candidates ({} secondary)\n", rows.size(),
                           result.sinkRate.mean().item<double>(), result.sinks.size(), secondary);
  writeAnalysisOutputs(o.common, out, m, o.common.materialize ? "materialized" : "probe");
}

const RegisterCommand reg{"sinks", 40, [](CLI::App& root) {
  auto o = std::make_shared<SinksCliOptions>();
  auto* sub = root.add_subcommand("sinks", "Attention sinks: sink scores, sink rate, secondary sinks, lifetimes, levels");
  o->common.add(sub);
  sub->add_option("--bos-position", o->sinks.bosPosition, "Primary-sink position b (default 0)");
  sub->add_option("--sink-threshold", o->sinks.sinkThreshold, "Sink-rate threshold ε on the sink score (default 0.3)");
  sub->add_option("--cosine-threshold", o->sinks.cosineThreshold, "|cos| with the primary sink's hidden state (default 0.9)");
  sub->callback([o, sub] {
    o->common.finishCommandLine(sub);
    runSinksCommand(*o);
  });
}};

}  // namespace
}  // namespace mechscope::cli
