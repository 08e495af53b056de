// `eap` in the plugin shape: edge attribution patching (EAP, EAP-IG) of clean vs corrupted prompts over a
// dataset. mechscope-cli's subcommand, the GUI's panel and batch plans derive from this table.
// JSON contract (docs/cli.md): method, steps, metric_clean/corrupt (+ per prompt), forward_nodes,
// receivers, n_edges, edges (the top-k by |score|); HDF5 arrays scores [n_forward][n_backward] and edge_mask.
#include <ATen/ATen.h>

#include <algorithm>

#include "analysis/ablation/ablation_groups.hpp"
#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/datasets.hpp"
#include "analysis/eap/edge_attribution.hpp"

namespace mechscope::analysis {

namespace {

/// The `k` edges of largest |score|, as {"upstream", "downstream", "receiver", "score"}.
nlohmann::json topEdges(const EapResult& r, int64_t k) {
  const at::Tensor masked = at::where(r.edgeMask, r.scores.abs(), at::full({}, -1.0, at::kDouble)).flatten();  // non-edges last
  const int64_t n = std::min<int64_t>(k, r.edgeMask.sum().item<int64_t>());
  const at::Tensor top = std::get<1>(masked.topk(n));
  const int64_t nB = r.graph.nBackward();
  nlohmann::json out = nlohmann::json::array();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t cell = top[i].item<int64_t>(), f = cell / nB, b = cell % nB;
    out.push_back({{"upstream", r.graph.forwardName(f)},
                   {"downstream", r.graph.backwardNode(b)},
                   {"receiver", toString(r.graph.backwardReceiver(b))},
                   {"score", r.scores[f][b].item<double>()}});
  }
  return out;
}

AnalysisResult runEap(const PluginInputs& in, const ParamValues& params, const RunContext* ctx) {
  EapParams p;
  p.method = parseEapMethod(params.text("method"));
  p.steps = static_cast<int>(params.integer("steps"));
  p.maxBatchRows = params.integer("max_batch_rows");
  const int64_t topK = params.integer("top_k");
  int dropped = 0;
  const std::vector<PatchGroup> groups = toPatchGroups(*in.dataset, &dropped);
  const EapResult r = edgeAttribution(*in.model, groups, p, ctx);

  AnalysisResult out;
  out.name = "eap";
  auto& j = out.json;
  j["analysis"] = "eap";
  j["method"] = toString(r.method);
  j["steps"] = r.steps;
  j["metric"] = "logit_diff";
  j["metric_clean"] = r.metricClean;
  j["metric_corrupt"] = r.metricCorrupt;
  j["metric_clean_per_prompt"] = tensorToJson(r.metricCleanPerPrompt);
  j["metric_corrupt_per_prompt"] = tensorToJson(r.metricCorruptPerPrompt);
  j["forward_nodes"] = nlohmann::json::array();
  for (int64_t f = 0; f < r.graph.nForward(); ++f) j["forward_nodes"].push_back(r.graph.forwardName(f));
  j["receivers"] = nlohmann::json::array();
  for (int64_t b = 0; b < r.graph.nBackward(); ++b)
    j["receivers"].push_back({{"node", r.graph.backwardNode(b)}, {"receiver", toString(r.graph.backwardReceiver(b))}});
  j["n_edges"] = r.graph.edgeCount();
  j["layout"] = "[forward_nodes][receivers]";
  j["edges"] = topEdges(r, topK);
  j["forwards"] = r.forwards;
  j["backwards"] = r.backwards;
  putPromptGroups(out, groups, dropped);
  j["dropped_words"] = in.dataset->droppedWords;
  out.addArray("scores", r.scores);
  out.addArray("edge_mask", r.edgeMask.to(at::kByte));
  out.addArray("metric_clean_per_prompt", r.metricCleanPerPrompt);
  out.addArray("metric_corrupt_per_prompt", r.metricCorruptPerPrompt);
  return out;
}

}  // namespace

AnalysisPlugin eapPlugin() {
  AnalysisPlugin p = makePlugin("eap", "Edge attribution",
                                "edge attribution patching (EAP, EAP-IG): a score for every edge between embeddings, heads "
                                "(q/k/v inputs), MLPs and logits",
                                PluginInput::Dataset, runEap);
  auto& d = p.descriptor;
  ParamInfo method = makeParam("method", ParamType::Choice, "--method",
                               "eap (gradient on the clean run) or eap-ig (gradients averaged over embeddings interpolated "
                               "from corrupt towards clean)",
                               "eap");
  method.choices = {"eap", "eap-ig"};
  ParamInfo steps = makeParam("steps", ParamType::Int, "--steps", "eap-ig: interpolation points (α = k/steps, k = 0 … steps − 1)", "30");
  steps.minimum = 1;
  ParamInfo topK = makeParam("top_k", ParamType::Int, "--top-k", "edges of largest |score| listed in the JSON (all are in the HDF5 scores)", "50");
  topK.minimum = 1;
  ParamInfo maxRows = makeParam("max_batch_rows", ParamType::Int, "--max-batch-rows", "prompts per forward/backward", "32");
  maxRows.minimum = 1;
  d.params = {method, steps, topK, maxRows};
  d.headlineKeys = {"method", "steps", "prompts", "metric_clean", "metric_corrupt", "n_edges"};
  d.exampleArgs = {"--method", "eap-ig", "--steps", "5"};
  return p;
}

}  // namespace mechscope::analysis
