// `eap` in the plugin shape: edge attribution patching (EAP, EAP-IG) of clean vs corrupted prompts over a
// dataset. mechscope-cli's subcommand, the GUI's panel and batch plans derive from this table.
// JSON contract (docs/cli.md): method, steps, metric_clean/corrupt (+ per prompt), forward_nodes,
// receivers, n_edges, edges (the top-k by |score|; with --check-top also exact_effect, and exact_check),
// faithfulness {edges_kept, edges_after_pruning, fraction, metric, faithfulness, cpr, cmd, average} with --faithfulness; HDF5 arrays scores
// [n_forward][n_backward], edge_mask and exact_effect.
#include <ATen/ATen.h>

#include <algorithm>

#include "analysis/ablation/ablation_groups.hpp"
#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/datasets.hpp"
#include "analysis/eap/edge_attribution.hpp"
#include "analysis/eap/edge_patching.hpp"

namespace mechscope::analysis {

namespace {

/// The `k` edges of largest |score| (ties by index), largest first.
std::vector<EdgeRef> topEdgeRefs(const EapResult& r, int64_t k) {
  const at::Tensor order = edgesByScore(r.graph, r.scores);
  const int64_t n = std::min<int64_t>(k, order.numel());
  const at::Tensor top = order.narrow(0, 0, n);
  const int64_t nB = r.graph.nBackward();
  std::vector<EdgeRef> out;
  for (int64_t i = 0; i < n; ++i) out.push_back({top[i].item<int64_t>() / nB, top[i].item<int64_t>() % nB});
  return out;
}

/// The edges as {"upstream", "downstream", "receiver", "score"}.
nlohmann::json edgesJson(const EapResult& r, const std::vector<EdgeRef>& edges) {
  nlohmann::json out = nlohmann::json::array();
  for (const EdgeRef& e : edges)
    out.push_back({{"upstream", r.graph.forwardName(e.forward)},
                   {"downstream", r.graph.backwardNode(e.backward)},
                   {"receiver", toString(r.graph.backwardReceiver(e.backward))},
                   {"score", r.scores[e.forward][e.backward].item<double>()}});
  return out;
}

/// --check-top: the first `n` listed edges patched exactly, each alone; adds "exact_effect" to those edges
/// and the comparison summary "exact_check". Reuses and extends `runs`; returns the forwards it made.
int putExactCheck(AnalysisResult& out, const HookedTransformer& m, const std::vector<PatchGroup>& groups, const std::vector<EdgeRef>& edges,
                  int64_t maxBatchRows, const RunContext* ctx, GroupRuns& runs) {
  const EdgePatchResult ex = patchEdges(m, groups, edges, maxBatchRows, ctx, &runs);
  double maxDiff = 0;
  int sameSign = 0;
  for (size_t i = 0; i < edges.size(); ++i) {
    auto& e = out.json["edges"][i];
    const double exact = ex.effect[static_cast<int64_t>(i)].item<double>(), score = e["score"].get<double>();
    e["exact_effect"] = exact;
    maxDiff = std::max(maxDiff, std::abs(exact - score));
    sameSign += (exact > 0) == (score > 0);
  }
  out.json["exact_check"] = {{"edges", edges.size()},
                             {"forwards", ex.forwards},
                             {"max_abs_difference", maxDiff},
                             {"sign_agreement", edges.empty() ? 0.0 : static_cast<double>(sameSign) / static_cast<double>(edges.size())}};
  out.addArray("exact_effect", ex.effect);
  return ex.forwards;
}

/// --faithfulness: the circuits of the top-n edges at MIB's sweep (faithfulnessAtFractions); adds "faithfulness".
/// Reuses and extends `runs`; returns the forwards it made.
int putFaithfulness(AnalysisResult& out, const HookedTransformer& m, const std::vector<PatchGroup>& groups, const EapResult& r,
                    int64_t maxBatchRows, const RunContext* ctx, GroupRuns& runs) {
  const FaithfulnessCurve c = faithfulnessAtFractions(m, groups, r.scores, mibFractions(), maxBatchRows, ctx, &runs);
  out.json["faithfulness"] = {{"edges_kept", c.edgesKept}, {"edges_after_pruning", c.edgesAfterPruning}, {"fraction", c.fraction}, {"metric", c.metric},
                              {"faithfulness", c.faithfulness}, {"cpr", c.cpr}, {"cmd", c.cmd}, {"average", c.average}, {"forwards", c.forwards}};
  out.json["cpr"] = c.cpr;
  out.json["cmd"] = c.cmd;
  return c.forwards;
}

AnalysisResult runEap(const PluginInputs& in, const ParamValues& params, const RunContext* ctx) {
  EapParams p;
  p.method = parseEapMethod(params.text("method"));
  p.steps = static_cast<int>(params.integer("steps"));
  p.maxBatchRows = params.integer("max_batch_rows");
  const int64_t topK = params.integer("top_k"), checkTop = params.integer("check_top");
  if (checkTop > topK) throw InputError("eap: --check-top patches listed edges; it must not exceed --top-k");
  int dropped = 0;
  const std::vector<PatchGroup> groups = toPatchGroups(*in.dataset, &dropped);
  GroupRuns runs;  // the corrupted runs and clean LDs edgeAttribution recorded, reused by the exact checks
  const EapResult r = edgeAttribution(*in.model, groups, p, ctx, &runs);

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
  const std::vector<EdgeRef> listed = topEdgeRefs(r, topK);
  j["edges"] = edgesJson(r, listed);
  int forwards = r.forwards;
  if (checkTop > 0)
    forwards += putExactCheck(out, *in.model, groups,
                              {listed.begin(), listed.begin() + std::min<int64_t>(checkTop, static_cast<int64_t>(listed.size()))}, p.maxBatchRows,
                              ctx, runs);
  if (params.flag("faithfulness")) forwards += putFaithfulness(out, *in.model, groups, r, p.maxBatchRows, ctx, runs);
  j["forwards"] = forwards;  // every pass of the command: attribution, exact check and faithfulness
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
  d.params = {method,
              bounded(makeParam("steps", ParamType::Int, "--steps", "eap-ig: interpolation points (α = k/steps, k = 0 … steps − 1)", "30"), 1),
              bounded(makeParam("top_k", ParamType::Int, "--top-k", "edges of largest |score| listed in the JSON (all are in the HDF5 scores)", "50"), 1),
              bounded(makeParam("max_batch_rows", ParamType::Int, "--max-batch-rows",
                                "rows per forward/backward: prompts per batch; eap-ig stacks several steps of a batch up to it", "32"),
                      1),
              bounded(makeParam("check_top", ParamType::Int, "--check-top",
                                "patch the first N listed edges exactly, each alone (batched): exact_effect per edge and exact_check", "0"),
                      0),
              makeParam("faithfulness", ParamType::Bool, "--faithfulness",
                        "evaluate the circuits of the top 0.1 % … 100 % of edges (every other edge patched): faithfulness curve, CPR, CMD")};
  d.headlineKeys = {"method", "steps", "prompts", "metric_clean", "metric_corrupt", "n_edges", "exact_check", "cpr", "cmd"};
  d.exampleArgs = {"--method", "eap-ig", "--steps", "5"};
  return p;
}

}  // namespace mechscope::analysis
