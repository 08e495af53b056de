// `mechscope-cli attention-influence`: per-token loss with and without a masked head set (Hua et al.
// 2025); the heads come from --heads or from the top K of an earlier retrieval run (docs/cli.md).
#include <ATen/ATen.h>

#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "analysis/attention_influence/attention_influence.hpp"
#include "analysis/retrieval/head_control.hpp"
#include "analysis/retrieval/retrieval.hpp"
#include "app/cli/analysis_common_options.hpp"
#include "app/cli/command.hpp"
#include "core/common/errors.hpp"

namespace mechscope::cli {
namespace {

struct AttentionInfluenceCliOptions {
  AnalysisCommonOptions common;
  std::string heads, scores, method = "uniform";
  int maskTop = 0;
};

void runAttentionInfluenceCommand(AttentionInfluenceCliOptions& o) {
  o.common.validate("attention-influence");
  if (o.heads.empty() && o.maskTop <= 0)
    throw InputError("attention-influence: give the heads to mask: --heads LAYER.HEAD,... or --mask-top K --scores retrieval.json");
  if (o.maskTop > 0 && o.scores.empty()) throw InputError("attention-influence: --mask-top needs --scores (a retrieval --json)");
  analysis::AttentionInfluenceOptions opts;
  opts.method = analysis::parseAblationMethod(o.method);
  if (!o.heads.empty()) opts.heads = parseHeadList(o.heads, "--heads");
  attachStderrProgress("attention-influence");
  const LoadedModel m = loadAnalysisModel(o.common);
  if (o.maskTop > 0)
    for (const auto& [l, h] : analysis::rankHeads(analysis::readRetrievalScores(o.scores, m.model->config()), o.maskTop))
      opts.heads.push_back({l, h});
  const auto rows = readInputRows(o.common, m, "attention-influence");
  const auto result = analysis::runAttentionInfluence(*m.model, rows, opts, &processContext());
  std::cout << fmt::format("attention-influence: {} rows, {} heads masked ({}), mean loss {:.4f} → {:.4f}, mean score {:.4f}\n",
                           rows.size(), opts.heads.size(), o.method, result.lossBase.mean().item<double>(),
                           result.lossMasked.mean().item<double>(), result.score.mean().item<double>());
  writeAnalysisOutputs(o.common, analysis::attentionInfluenceToResult(result, opts), m, "materialized");
}

const RegisterCommand reg_cmd_attention_influence{"attention-influence", 44, [](CLI::App& root) {
  auto o = std::make_shared<AttentionInfluenceCliOptions>();
  auto* sub = root.add_subcommand("attention-influence",
                                  "AttentionInfluence: per-token loss increase when a head set (e.g. retrieval heads) is masked");
  o->common.add(sub, false);
  sub->add_option("--heads", o->heads, "heads to mask, LAYER.HEAD list, e.g. 3.1,2.0");
  sub->add_option("--mask-top", o->maskTop, "mask the top K heads of --scores (an earlier `retrieval --json`)");
  sub->add_option("--scores", o->scores, "retrieval JSON whose retrieval_score ranks the heads for --mask-top");
  sub->add_option("--method", o->method, "uniform (default: uniform causal attention, the paper's mask) or zero (head output 0)");
  sub->callback([o, sub] {
    o->common.finishCommandLine(sub);
    runAttentionInfluenceCommand(*o);
  });
}};

}  // namespace
}  // namespace mechscope::cli
