#include "analysis/sinks/sinks.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "analysis/common/attention_stats.hpp"
#include "core/common/errors.hpp"

namespace mechscope::analysis {

namespace {

std::string sinkLabel(int lifetime, int nLayers) {
  if (lifetime >= nLayers - 15) return "bos_sink";
  if (lifetime > 4 && lifetime < nLayers - 15) return "secondary";
  return "noise";
}

}  // namespace

SinksResult runSinks(const HookedTransformer& model, const std::vector<std::vector<int64_t>>& rows, const SinksOptions& options,
                     const RunContext* ctx) {
  const ModelConfig& c = model.config();
  const int L = c.nLayers;
  const int64_t H = c.nHeads, b = options.bosPosition;
  if (rows.empty()) throw InputError("sinks: no input sequence");
  SinksResult out;
  out.nLayers = L;
  out.sinkScore = at::zeros({L, H}, at::kDouble);  // [layer, head]
  out.sinkRate = at::zeros({L}, at::kDouble);      // [layer]
  ProbeRequest req;
  req.columnKeys = {b};  // only the BOS column: O(n) after the row normalisers, not a pass over n²/2
  req.columnCounts = true;
  AttentionStatsOptions so;
  so.materialize = options.materialize;
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto& ids = rows[r];
    const int64_t n = static_cast<int64_t>(ids.size());
    if (b < 0 || b + 1 >= n)
      throw InputError(fmt::format("sinks: --bos-position {} needs a sequence longer than {} tokens; row {} has {}", b, b + 1, r, n));
    at::Tensor score = at::zeros({L, H}, at::kDouble);  // [layer, head]
    std::vector<at::Tensor> hidCos(L), mlpCos(L), mlpNorm(L);  // each [pos] fp64 on CPU
    std::vector<double> bosNorm(static_cast<size_t>(L));
    HookSet extra;
    extra.add("blocks.*.hook_resid_post", [&](const at::Tensor& h, const HookContext& hc) -> std::optional<at::Tensor> {
      at::Tensor x = h[0].to(at::kFloat);  // [pos, d_model]
      at::Tensor ref = x[b].unsqueeze(0);  // [1, d_model]
      bosNorm[static_cast<size_t>(hc.layer)] = x[b].norm().item<double>();
      hidCos[static_cast<size_t>(hc.layer)] = at::cosine_similarity(x, ref, 1, 1e-8).to(at::kDouble).cpu();
      return std::nullopt;
    });
    extra.add("blocks.*.hook_mlp_out", [&](const at::Tensor& m, const HookContext& hc) -> std::optional<at::Tensor> {
      at::Tensor x = m[0].to(at::kFloat);  // [pos, d_model]
      mlpCos[static_cast<size_t>(hc.layer)] = at::cosine_similarity(x, x[b].unsqueeze(0), 1, 1e-8).to(at::kDouble).cpu();
      mlpNorm[static_cast<size_t>(hc.layer)] = x.norm(2, {1}).to(at::kDouble).cpu();
      return std::nullopt;
    });
    runAttentionStats(
        model, ids, req,
        [&](int l, const ProbeResult& s) {
          const double cnt = s.columnCounts[b].item<double>();
          score[l] = s.columnKeySums.select(1, 0).to(at::kDouble).cpu() / std::max(cnt, 1.0);
          if (ctx) ctx->step(l + 1, L, fmt::format("sinks row {}", r));
        },
        so, &extra, ctx);
    out.sinkScore += score;
    out.sinkRate += (score > options.sinkThreshold).to(at::kDouble).mean(1);

    // Clipper window (§2.1 step 2) from the BOS norms.
    int start = 0, end = L;
    if (L >= 2) {
      std::vector<double> delta;
      for (int l = 0; l + 1 < L; ++l) delta.push_back(bosNorm[static_cast<size_t>(l + 1)] - bosNorm[static_cast<size_t>(l)]);
      start = static_cast<int>(std::max_element(delta.begin(), delta.end()) - delta.begin()) + 1;
      if (start < static_cast<int>(delta.size()))
        end = static_cast<int>(std::min_element(delta.begin() + start, delta.end()) - (delta.begin() + start)) + start + 1;
      end = std::min(end, L);
    }
    out.window.emplace_back(start, end);
    // Candidates (§2.1 steps 3–5).
    std::map<int64_t, std::vector<int>> recorded;
    for (int l = start; l < end; ++l) {
      const at::Tensor cs = hidCos[static_cast<size_t>(l)];
      const double* p = cs.data_ptr<double>();
      for (int64_t pos = b + 1; pos < n; ++pos)
        if (std::abs(p[pos]) > options.cosineThreshold) recorded[pos].push_back(l);
    }
    for (const auto& [pos, layers] : recorded) {
      SecondarySink s;
      s.batch = static_cast<int64_t>(r);
      s.position = pos;
      s.tokenId = ids[static_cast<size_t>(pos)];
      s.creationLayer = layers.front();
      s.lifetime = static_cast<int>(layers.size());
      s.label = sinkLabel(s.lifetime, L);
      s.mlpCosine = mlpCos[static_cast<size_t>(s.creationLayer)][pos].item<double>();
      s.mlpNorm = mlpNorm[static_cast<size_t>(s.creationLayer)][pos].item<double>();
      s.layers = layers;
      out.sinks.push_back(std::move(s));
    }
  }
  out.sinkScore /= static_cast<double>(rows.size());
  out.sinkRate /= static_cast<double>(rows.size());
  return out;
}

AnalysisResult sinksToResult(const SinksResult& result, const SinksOptions& options) {
  AnalysisResult r;
  r.name = "sinks";
  r.json["sink_score"] = tensorToJson(result.sinkScore);
  r.json["sink_rate"] = tensorToJson(result.sinkRate);
  nlohmann::json sinks = nlohmann::json::array();
  std::map<std::pair<int, int>, int> levels;
  for (const auto& s : result.sinks) {
    sinks.push_back({{"batch", s.batch}, {"position", s.position}, {"token_id", s.tokenId}, {"creation_layer", s.creationLayer},
                     {"lifetime", s.lifetime}, {"label", s.label}, {"mlp_cosine", s.mlpCosine}, {"mlp_norm", s.mlpNorm},
                     {"layers", s.layers}});
    if (s.label == "secondary") ++levels[{s.creationLayer, s.lifetime}];
  }
  r.json["secondary_sinks"] = sinks;
  nlohmann::json lv = nlohmann::json::array();
  for (const auto& [k, count] : levels) lv.push_back({{"creation_layer", k.first}, {"lifetime", k.second}, {"count", count}});
  r.json["sink_levels"] = lv;
  nlohmann::json prim = nlohmann::json::array();
  for (size_t i = 0; i < result.window.size(); ++i)
    prim.push_back({{"batch", i}, {"position", options.bosPosition}, {"window", {result.window[i].first, result.window[i].second}}});
  r.json["primary_sink"] = prim;
  r.json["bos_position"] = options.bosPosition;
  r.json["sink_threshold"] = options.sinkThreshold;
  r.addArray("sink_score", result.sinkScore);
  r.addArray("sink_rate", result.sinkRate);
  if (!result.sinks.empty()) {
    std::vector<int64_t> flat;
    for (const auto& s : result.sinks) {
      for (int64_t v : {s.batch, s.position, s.tokenId, static_cast<int64_t>(s.creationLayer), static_cast<int64_t>(s.lifetime)})
        flat.push_back(v);
    }
    r.addArray("secondary_sinks", at::tensor(at::ArrayRef<int64_t>(flat), at::kLong).view({-1, 5}));  // [sink, (batch, position, token, creation, lifetime)]
  }
  return r;
}

}  // namespace mechscope::analysis
