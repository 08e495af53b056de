// AttentionInfluence in the plugin shape: the table entry every front end derives from and the run that
// turns its parameters (--heads or --mask-top with --scores, --method) into runAttentionInfluence's options.
#include <ATen/ATen.h>

#include "analysis/attention_influence/attention_influence.hpp"
#include "analysis/retrieval/head_control.hpp"
#include "analysis/retrieval/retrieval.hpp"
#include "core/common/errors.hpp"

namespace mechscope::analysis {

namespace {

AnalysisResult runInfluence(const PluginInputs& in, const ParamValues& params, const RunContext* ctx) {
  const ModelConfig& c = in.model->config();
  AttentionInfluenceOptions opts;
  opts.method = parseAblationMethod(params.text("method"));
  const int64_t maskTop = params.integer("mask_top");
  if (!params.given("heads") && maskTop <= 0)
    throw InputError("attention-influence: give the heads to mask: --heads LAYER.HEAD,... or --mask-top K --scores retrieval.json");
  if (params.given("heads")) opts.heads = params.heads("heads", c.nLayers, c.nHeads);
  if (maskTop > 0) {
    if (!params.given("scores")) throw InputError("attention-influence: --mask-top needs --scores (a retrieval --json)");
    for (const HeadRef& h : rankHeads(readRetrievalScores(params.text("scores"), c), static_cast<int>(maskTop))) opts.heads.push_back(h);
  }
  const AttentionInfluenceResult r = runAttentionInfluence(*in.model, in.rows, opts, ctx);
  AnalysisResult out = attentionInfluenceToResult(r, opts);
  nlohmann::json delta = nlohmann::json::array();  // [row][pos − 1]: the per-token loss increase, for the line plot
  for (const auto& row : out.json["rows"]) delta.push_back(row["token_delta"]);
  out.json["token_delta"] = std::move(delta);
  out.json["mean_loss_base"] = r.lossBase.mean().item<double>();
  out.json["mean_loss_masked"] = r.lossMasked.mean().item<double>();
  out.json["masked_heads"] = static_cast<int64_t>(opts.heads.size());
  return out;
}

}  // namespace

AnalysisPlugin attentionInfluencePlugin() {
  AnalysisPlugin p = makePlugin("attention-influence", "Attention influence",
                                "per-token loss increase when a head set (e.g. retrieval heads) is masked (Hua et al. 2025)",
                                PluginInput::TokenRows, runInfluence);
  auto& d = p.descriptor;
  ParamInfo top = makeParam("mask_top", ParamType::Int, "--mask-top", "mask the top K heads of --scores (an earlier `retrieval --json`)", "0");
  top.minimum = 0;
  d.params = {makeParam("heads", ParamType::HeadList, "--heads", "heads to mask, LAYER.HEAD list, e.g. 3.1,2.0"), top,
              makeParam("scores", ParamType::File, "--scores", "retrieval JSON whose retrieval_score ranks the heads for --mask-top"),
              makeParam("method", ParamType::Choice, "--method",
                    "uniform (uniform causal attention, the paper's mask) or zero (head output 0)", "uniform")};
  d.params.back().choices = {"uniform", "zero"};
  d.headlineKeys = {"method", "masked_heads", "mean_loss_base", "mean_loss_masked", "mean_score"};
  d.lineKeys = {"token_delta"};
  d.exampleArgs = {"--heads", "0.1,1.3"};  // two of the planted model's sink heads
  return p;
}

}  // namespace mechscope::analysis
