#include "analysis/attention_overview/attention_overview.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <string>

#include "core/common/errors.hpp"
#include "core/model/hook_names.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

AttentionOverview attentionOverview(const HookedTransformer& model, const std::vector<int64_t>& tokens, int64_t skip,
                                    const RunContext* ctx) {
  const int64_t P = static_cast<int64_t>(tokens.size());
  if (skip < 0 || skip >= P)
    throw InputError("attention-overview: skip_queries = " + std::to_string(skip) + ", expected 0 ≤ k < " + std::to_string(P) +
                     " (the prompt's length)");
  const int L = model.config().nLayers, H = model.config().nHeads;
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  AttentionOverview out;
  out.firstTokenMass = at::zeros({L, H}, f64);
  out.meanDistance = at::zeros({L, H}, f64);
  out.meanEntropy = at::zeros({L, H}, f64);
  at::Tensor perQuery = at::zeros({P}, f64);
  // (q − k) for visible keys, 0 above the diagonal: [query, key]
  const at::Tensor q = at::arange(P, f64).unsqueeze(1), k = at::arange(P, f64).unsqueeze(0);
  const at::Tensor distance = (q - k).clamp_min(0.0);
  HookSet hooks;
  hooks.add("blocks.*.attn.hook_pattern", [&](const at::Tensor& t, const HookContext& c) -> std::optional<at::Tensor> {
    const at::Tensor a = t.select(0, 0).to(at::kCPU, at::kDouble).narrow(1, skip, P - skip);  // [head, query ≥ skip, key]
    const at::Tensor first = a.select(2, 0);                                                    // [head, query]
    out.firstTokenMass[c.layer] = first.mean(1);
    out.meanDistance[c.layer] = (a * distance.narrow(0, skip, P - skip)).sum(2).mean(1);
    out.meanEntropy[c.layer] = -at::xlogy(a, a).sum(2).mean(1);
    perQuery.narrow(0, skip, P - skip).add_(first.sum(0));
    if (ctx) ctx->step(c.layer + 1, L, "attention patterns");
    return std::nullopt;
  });
  ForwardOptions fo;
  fo.path = AttentionPath::Explicit;
  fo.logitsLastOnly = true;
  model.forward(model.checkTokens(at::tensor(tokens, at::kLong).unsqueeze(0)), fo, &hooks, ctx);
  perQuery.div_(static_cast<double>(L) * H);
  perQuery.narrow(0, 0, skip).fill_(NAN);
  out.perQueryFirstTokenMass = perQuery;
  return out;
}

namespace {

AnalysisResult runOverview(const PluginInputs& in, const ParamValues& params, const RunContext* ctx) {
  if (in.rows.empty()) throw InputError("attention-overview: no prompt given");
  const int64_t skip = params.integer("skip_queries");
  AnalysisResult r;
  r.name = "attention-overview";
  at::Tensor first, dist, ent;  // [layer, head] sums over prompts
  nlohmann::json perQuery = nlohmann::json::array();
  for (const auto& row : in.rows) {
    const AttentionOverview o = attentionOverview(*in.model, row, skip, ctx);
    first = first.defined() ? first + o.firstTokenMass : o.firstTokenMass;
    dist = dist.defined() ? dist + o.meanDistance : o.meanDistance;
    ent = ent.defined() ? ent + o.meanEntropy : o.meanEntropy;
    nlohmann::json line = nlohmann::json::array();
    for (int64_t i = 0; i < o.perQueryFirstTokenMass.size(0); ++i) {
      const double v = o.perQueryFirstTokenMass[i].item<double>();
      line.push_back(std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v));
    }
    perQuery.push_back(std::move(line));
  }
  const double n = static_cast<double>(in.rows.size());
  r.json["first_token_mass"] = tensorToJson(first / n);
  r.json["mean_distance"] = tensorToJson(dist / n);
  r.json["mean_entropy"] = tensorToJson(ent / n);
  r.json["per_query_first_token_mass"] = std::move(perQuery);
  r.json["prompts"] = static_cast<int64_t>(in.rows.size());
  r.json["skip_queries"] = skip;
  r.json["mean_first_token_mass"] = (first / n).mean().item<double>();
  r.addArray("first_token_mass", first / n);
  r.addArray("mean_distance", dist / n);
  r.addArray("mean_entropy", ent / n);
  return r;
}

}  // namespace

AnalysisPlugin attentionOverviewPlugin() {
  AnalysisPlugin p = makePlugin("attention-overview", "Overview",
                                "per-head first-token mass, mean query-key distance and attention entropy from one forward pass",
                                PluginInput::TokenRows, runOverview);
  auto& d = p.descriptor;
  ParamInfo skip = makeParam("skip_queries", ParamType::Int, "--skip-queries",
                             "leave out queries 0..k-1 (the first token attends only to itself)", "1");
  skip.minimum = 0;
  d.params = {skip};
  d.figureKeys = {"first_token_mass", "mean_distance", "mean_entropy"};
  d.headlineKeys = {"prompts", "mean_first_token_mass"};
  d.lineKeys = {"per_query_first_token_mass"};
  return p;
}

}  // namespace mechscope::analysis
